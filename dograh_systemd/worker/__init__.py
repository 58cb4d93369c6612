"""The process every dograh-api@ instance runs: uvicorn plus sd_notify.

Kept free of the control tool's dependencies (jinja2, dotenv): it must import
in the app's own venv, which needs only uvicorn and sdnotify.
"""

"""The names of Dograh's units."""

API_TEMPLATE = "dograh-api@"
ARQ_TEMPLATE = "dograh-arq@"
ARI_MANAGER = "dograh-ari-manager.service"
CAMPAIGN_ORCHESTRATOR = "dograh-campaign-orchestrator.service"
SINGLETONS = (ARI_MANAGER, CAMPAIGN_ORCHESTRATOR)


def api_unit(port: int) -> str:
    return f"{API_TEMPLATE}{port}.service"


def arq_unit(index: int) -> str:
    return f"{ARQ_TEMPLATE}{index}.service"


def instance_of(unit: str) -> int:
    return int(unit.split("@", 1)[1].removesuffix(".service"))

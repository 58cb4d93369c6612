"""Several hosts on etcd: the key layout (keys.py), what the keys hold, read into one
snapshot (state.py), singletons by lease (election.py), desired state into local verbs
(converge.py), each host's agent (agent.py), and the members the package sets up from
Debian's etcd-server (members.py)."""

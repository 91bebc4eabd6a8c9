"""Several drill hosts on one machine, for real: ``python -m flows.cluster`` (``make cluster-demo``).

One PostgreSQL (:mod:`.postgres`) under a Prefect server; drill hosts that are
network + UTS namespaces joined to the server by veth pairs (:mod:`.hosts`),
each with a process worker running the flow from a wheel of this project
installed outside the checkout (:mod:`.package`); one evidence store with a
folder per host and one publisher; CPU and memory sampled while the runs go
(:mod:`.measure`); :mod:`.demo` puts it together and tears it all down.

Linux only, as root (namespaces, veths, running PostgreSQL as ``postgres``).
"""

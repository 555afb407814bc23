"""Who a process is, from what procfs gives: the container and pod its cgroup path names
(containers.py), the VM a QEMU command line runs (vms.py), and its command line with secrets hidden
(redaction.py). Pure functions of the text read; procfs/facts.py calls them once per process."""

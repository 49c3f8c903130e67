"""Turn the raw results of playbooks/bench.yml into a Markdown report, JSON figures and charts."""

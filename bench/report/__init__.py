"""Turn the raw results of bench/playbook.yml into a Markdown report and JSON figures."""

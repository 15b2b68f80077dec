"""The ``barman-cloud-plugin`` console script: the three processes and the tools around them."""

"""Targets (implementations under test): targets.yaml, the local network-namespace target, the agent."""

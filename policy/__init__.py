"""The aks-platform policy pack (run by the Pulumi CLI) and its offline runner (check.py)."""

"""The checks of charts/render-check.py, one module per group, on a `helm template` output of
the mailcred chart: common (documents by kind, the failure list), split (the kinds
kubernetes-validate cannot check), linkpage, account_sets, operator_pod, webhook, rbac,
monitoring, operator_flags, and check (runs them all for one value set)."""

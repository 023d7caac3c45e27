"""The node's database: workflows, stages, status history, nonces, pod keys, assets, results."""

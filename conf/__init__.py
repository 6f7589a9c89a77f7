"""adam's Hydra config tree; shipped inside the package as ``adam.conf`` so ``pkg://adam.conf`` works after any install."""

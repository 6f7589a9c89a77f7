"""What chooses a model: the size catalog, hardware detection, tiers, and the memory plan that fits one to the other."""

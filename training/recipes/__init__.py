"""Recipes: whole training runs end to end (data packing, a GPU driver, evaluation), built on the trainers."""

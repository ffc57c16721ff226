"""Training, tuning and research benchmarks of the shapes-world model.

Run from a repository checkout (``python -m shapes_lab.train``, ``lusd lab train-shapes``);
not part of the installed ``lusd`` package, which holds the world, its oracle and the
trained model that this code produces.
"""

"""Side-by-side training speed of fastnn, its NumPy reference and (when
installed) PyTorch, JAX and scikit-learn. See fastnn/integrations/benchmark.py.

    python bench/compare.py                      # classic and wide, 5 epochs each
    python bench/compare.py --workload classic --epochs 7 --json results.json
"""
from fastnn.integrations.benchmark import main

if __name__ == "__main__":
    main()

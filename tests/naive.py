"""The obvious matmuls: triple loops, compiled, the tiled kernels' reference
in tests/test_matmul.py (slow, obvious versions live with the tests)."""
from numba import njit


@njit(cache=True)
def gemm_nn_naive(A, B, C):
    M, K = A.shape
    N = B.shape[1]
    for i in range(M):
        for j in range(N):
            s = 0.0
            for k in range(K):
                s += A[i, k] * B[k, j]
            C[i, j] = s


@njit(cache=True)
def gemm_tn_naive(A, B, C):
    K, M = A.shape
    N = B.shape[1]
    for i in range(M):
        for j in range(N):
            s = 0.0
            for k in range(K):
                s += A[k, i] * B[k, j]
            C[i, j] = s


@njit(cache=True)
def gemm_nt_naive(A, B, C):
    M, K = A.shape
    N = B.shape[0]
    for i in range(M):
        for j in range(N):
            s = 0.0
            for k in range(K):
                s += A[i, k] * B[j, k]
            C[i, j] = s

"""LLVM-level helpers Numba does not offer: a software prefetch and
fixed-size scratch arrays on the stack.

Prefetch. The matmul tiles walk a 48-column panel of B one row per step. When B's
rows are a multiple of 4 KiB apart (1024 float32 columns), every step lands
on a new page and the hardware prefetchers, which stay within a page, stop
helping: the tiles ran at ~40% of their speed on such shapes. Prefetching
the panel's row a dozen steps ahead restored it (measured best-of-4:
256x1024 @ 1024x1008 from ~85 to ~200-290 GFLOP/s; no loss elsewhere).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch2d(typingctx, arr, i, j):
    """Hint the CPU to load the cache line of ``arr[i, j]`` (read, keep in
    all cache levels). No bounds check: callers pass valid indices."""
    sig = types.void(arr, i, j)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]],
                                       wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, rw = read, locality = 3 (keep), cache type = data)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def stack_buffer(typingctx, n, like):
    """Pointer to ``n`` (a compile-time constant) uninitialised elements of
    ``like``'s dtype on the stack; wrap with ``numba.carray(ptr, shape)``.

    Why: accumulators in a heap array (``np.zeros``) stay in registers only
    if LLVM can prove that no other access in the loop touches them. With an
    indirect index (``W[indices[p]]`` in the sparse kernels) it cannot, so
    every step reloaded and stored all of them: ~2.7x slower than the same
    loop over a stack buffer, which provably aliases nothing.
    """
    if not isinstance(n, types.IntegerLiteral):
        return None
    count = n.literal_value
    dtype = like.dtype
    sig = types.CPointer(dtype)(n, like)

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_data_type(dtype), size=count)

    return sig, codegen

"""LLVM-level code Numba does not offer: fixed-size scratch arrays on the
stack, the matmul tile's inner loop in explicit vectors (with a software
prefetch), a prefetch of one array element's cache line, the atomics
and waits of two threads meeting inside one parallel region, and the
thread's floating-point mode (denormals flushed while kernels run).

Prefetch. The matmul tiles walk a panel of B one row per step. When B's
rows are a multiple of 4 KiB apart (1024 float32 columns), every step lands
on a new page and the hardware prefetchers, which stay within a page, stop
helping: the tiles ran at ~40% of their speed on such shapes. Prefetching
the panel's row a dozen steps ahead restored it (measured best-of-4:
256x1024 @ 1024x1008 from ~85 to ~200-290 GFLOP/s; no loss elsewhere).
"""
import os
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import jit, jit_inline


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


@intrinsic
def prefetch(typingctx, arr, i):
    """Hint the cache line holding ``arr.flat[i]`` into the caches (no
    fault if ``i`` is out of range: a prefetch never traps)."""
    if not isinstance(arr, types.Array) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        # (read, keep in all levels, data)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@intrinsic
def tile_fma(typingctx, acc, A, a_base, a_rows, a_rstride, a_kstride, B, b_base, b_kstride, K,
             MR, NR, VW, PF_ROWS):
    """The register tile's inner loop, written with explicit vectors:

        acc[r*NR + j] = sum_k A.flat[a_base + min(r, a_rows-1)*a_rstride + k*a_kstride]
                              * B.flat[b_base + k*b_kstride + j]

    for r < MR, j < NR (``acc``: a pointer to MR*NR elements, e.g. a
    :func:`stack_buffer`). ``MR``, ``NR``, ``VW`` (elements per vector) and
    ``PF_ROWS`` (prefetch B's row k + PF_ROWS, 0 = none) are compile-time
    constants. The MR*NR/VW accumulators are loop-carried vector values, so
    LLVM keeps them in registers; each step loads NR/VW vectors of B,
    broadcasts MR values of A and issues MR*NR/VW fused multiply-adds, in
    the same order per element as the scalar loop (same results).

    Why explicit: the plain loop over a 2-D accumulator vectorised only
    with >= 48 columns (shorter column loops were fully unrolled into scalar
    code), which forced AVX2 into a 2 x 48 tile at half of OpenBLAS's speed
    (see layout.py); with vectors written out any tile shape vectorises.
    With AVX-512's 8 x 48 tile it is also ~15% faster than the plain loop
    (`python bench/gemm_isa.py`).
    """
    return _tile_fma_typed(acc, A, a_base, a_rows, a_rstride, a_kstride, B, b_base, b_kstride,
                           None, K, MR, NR, VW, PF_ROWS)


@intrinsic
def tile_fma_gather(typingctx, acc, A, a_base, a_rows, a_rstride, a_kstride, B, b_base,
                    b_kstride, kidx, K, MR, NR, VW, PF_ROWS):
    """:func:`tile_fma` over the steps ``kidx[0:K]``: step k reads A's
    column and B's row ``kidx[k]``. For a first layer whose inputs are
    mostly zero: ``kidx`` lists the input columns where any row of the tile
    is non-zero, so the tile skips the all-zero steps without a branch per
    step, and reads A in place (no packing)."""
    return _tile_fma_typed(acc, A, a_base, a_rows, a_rstride, a_kstride, B, b_base, b_kstride,
                           kidx, K, MR, NR, VW, PF_ROWS)


def _tile_fma_typed(acc, A, a_base, a_rows, a_rstride, a_kstride, B, b_base, b_kstride, kidx,
                    K, MR, NR, VW, PF_ROWS):
    """Signature and code generator of tile_fma (``kidx`` None) and
    tile_fma_gather."""
    for lit in (MR, NR, VW, PF_ROWS):
        if not isinstance(lit, types.IntegerLiteral):
            return None
    mr, nr, vw, pf = (x.literal_value for x in (MR, NR, VW, PF_ROWS))
    if nr % vw or B.layout != "C" or A.dtype != acc.dtype or B.dtype != acc.dtype:
        return None  # B's rows are read as whole vectors
    nv = nr // vw
    dtype = acc.dtype
    gather = kidx is not None
    if gather and not (isinstance(kidx, types.Array) and kidx.ndim == 1
                       and isinstance(kidx.dtype, types.Integer)):
        return None
    head = (acc, A, a_base, a_rows, a_rstride, a_kstride, B, b_base, b_kstride)
    sig = types.void(*head, *((kidx,) if gather else ()), K, MR, NR, VW, PF_ROWS)

    def codegen(context, builder, signature, args):
        (acc_p, a_arr, a0, arows, ars, aks, b_arr, b0, bks) = args[:9]
        kk = args[10] if gather else args[9]
        kk_ty = signature.args[10] if gather else signature.args[9]
        i64 = ir.IntType(64)
        elt = context.get_data_type(dtype)
        vec = ir.VectorType(elt, vw)
        # Vector registers: 32 zmm with 512-bit vectors (AVX-512), else 16.
        nregs = 32 if vw * context.get_abi_sizeof(elt) == 64 else 16

        def as_i64(v, ty):
            return context.cast(builder, v, ty, types.int64)

        a0, arows, ars, aks, b0, bks, kk = (
            as_i64(v, t) for v, t in zip((a0, arows, ars, aks, b0, bks, kk),
                                         (signature.args[2], signature.args[3],
                                          signature.args[4], signature.args[5],
                                          signature.args[7], signature.args[8], kk_ty)))
        if gather:
            idx_ty = signature.args[9]
            idx_data = context.make_array(idx_ty)(context, builder, args[9]).data

            def b_row_of(kv):  # kidx[kv] as an int64 row number of B
                return context.cast(builder, builder.load(builder.gep(idx_data, [kv])),
                                    idx_ty.dtype, types.int64)
        else:
            def b_row_of(kv):
                return kv
        a_data = context.make_array(signature.args[1])(context, builder, a_arr).data
        b_data = context.make_array(signature.args[6])(context, builder, b_arr).data
        # Row r of A starts at a0 + min(r, a_rows - 1) * a_rstride.
        last = builder.sub(arows, ir.Constant(i64, 1))
        rows = []
        for r in range(mr):
            rr = ir.Constant(i64, r)
            clamped = builder.select(builder.icmp_signed("<", rr, last), rr, last)
            rows.append(builder.gep(a_data, [builder.add(a0, builder.mul(clamped, ars))]))
        bbase = builder.gep(b_data, [b0])
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec] * 3),
            f"llvm.fma.v{vw}f{8 * context.get_abi_sizeof(elt)}")
        if pf:
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            pfn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0")
        zero = ir.Constant(vec, None)

        pre = builder.block
        head = builder.append_basic_block("tile_fma.head")
        body = builder.append_basic_block("tile_fma.body")
        done = builder.append_basic_block("tile_fma.done")
        builder.branch(head)
        builder.position_at_end(head)
        k = builder.phi(i64)
        k.add_incoming(ir.Constant(i64, 0), pre)
        accs = []
        for _ in range(mr * nv):
            p = builder.phi(vec)
            p.add_incoming(zero, pre)
            accs.append(p)
        builder.cbranch(builder.icmp_signed("<", k, kk), body, done)

        builder.position_at_end(body)
        brow = builder.gep(bbase, [builder.mul(b_row_of(k), bks)])
        if pf:
            kpf = builder.add(k, ir.Constant(i64, pf))
            kpf = builder.select(builder.icmp_signed("<", kpf, kk), kpf,
                                 builder.sub(kk, ir.Constant(i64, 1)))
            prow = builder.gep(bbase, [builder.mul(b_row_of(kpf), bks)])
            line = 64 // context.get_abi_sizeof(elt)
            for c in range(0, nr, line):
                builder.call(pfn, [builder.bitcast(builder.gep(prow, [ir.Constant(i64, c)]),
                                                   i8p),
                                   ir.Constant(i32, 0), ir.Constant(i32, 3),
                                   ir.Constant(i32, 1)])
        koff = builder.mul(b_row_of(k), aks)

        def load_b(v):
            ptr = builder.bitcast(builder.gep(brow, [ir.Constant(i64, v * vw)]),
                                  vec.as_pointer())
            return builder.load(ptr, align=context.get_abi_sizeof(elt))

        def broadcast_a(r):
            a = builder.load(builder.gep(rows[r], [koff]))
            s = builder.insert_element(ir.Constant(vec, ir.Undefined), a, ir.Constant(i64, 0))
            return builder.shuffle_vector(
                s, ir.Constant(vec, ir.Undefined),
                ir.Constant(ir.VectorType(ir.IntType(32), vw), [0] * vw))

        new = [None] * (mr * nv)
        if mr * nv + nv + 1 <= nregs:
            # B's row first (nv registers), then one broadcast of A at a time.
            bv = [load_b(v) for v in range(nv)]
            for r in range(mr):
                s = broadcast_a(r)
                for v in range(nv):
                    new[r * nv + v] = builder.call(fma, [s, bv[v], accs[r * nv + v]])
        else:
            # The MR broadcasts first, then one vector of B at a time: AVX2's
            # float64 3 x 16 tile holds 12 accumulators + 4 vectors of B + a
            # broadcast = 17 > 16 registers the other way, and spilled
            # (AMD EPYC Zen 2: float64 512^3 at 0.47 of np.matmul; 12 + 3 +
            # 1 = 16 this way: 1.06-1.27).
            bcast = [broadcast_a(r) for r in range(mr)]
            for v in range(nv):
                b = load_b(v)
                for r in range(mr):
                    new[r * nv + v] = builder.call(fma, [bcast[r], b, accs[r * nv + v]])
        knext = builder.add(k, ir.Constant(i64, 1))
        k.add_incoming(knext, builder.block)
        for p, n in zip(accs, new):
            p.add_incoming(n, builder.block)
        builder.branch(head)

        builder.position_at_end(done)
        for r in range(mr):
            for v in range(nv):
                ptr = builder.bitcast(builder.gep(acc_p, [ir.Constant(i64, r * nr + v * vw)]),
                                      vec.as_pointer())
                builder.store(accs[r * nv + v], ptr, align=context.get_abi_sizeof(elt))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def bits_to_float(typingctx, i):
    """The float whose bit pattern is the integer ``i`` (int32 -> float32,
    int64 -> float64): builds ``2**n`` in the vectorisable exp of
    activations.py."""
    if i == types.int32:
        out = types.float32
    elif i == types.int64:
        out = types.float64
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(out))

    return out(i), codegen


def _flags_vector(context, builder, signature, args, lanes):
    """The prologue of the compress intrinsics, whose first four arguments
    are (flags, k0, out, c): ``lanes`` flags from k0 as a vector, k0 and c
    as int64, and out's data pointer."""
    f_arr, k0v, o_arr, cv = args[:4]
    elt = context.get_data_type(signature.args[0].dtype)
    k0v = context.cast(builder, k0v, signature.args[1], types.int64)
    cv = context.cast(builder, cv, signature.args[3], types.int64)
    f_data = context.make_array(signature.args[0])(context, builder, f_arr).data
    o_data = context.make_array(signature.args[2])(context, builder, o_arr).data
    fvec = ir.VectorType(elt, lanes)
    v = builder.load(builder.bitcast(builder.gep(f_data, [k0v]), fvec.as_pointer()), align=1)
    return v, k0v, cv, o_data


def _splat_i32(builder, x, lanes):
    """The int64 ``x`` as an int32 in every lane of a vector."""
    i32 = ir.IntType(32)
    ivec = ir.VectorType(i32, lanes)
    one = builder.insert_element(ir.Constant(ivec, ir.Undefined), builder.trunc(x, i32),
                                 ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(ivec, ir.Undefined),
                                  ir.Constant(ivec, [0] * lanes))


@intrinsic
def compress_nonzero16(typingctx, flags, k0, out, c):
    """AVX-512's vpcompressd: the indices ``k0 + j`` (j < 16) with
    ``flags[k0 + j] != 0``, in order, stored at ``out[c:]`` (int32);
    returns ``c`` plus their count. ``flags`` must be readable up to
    ``k0 + 16`` and ``out`` writable up to ``c + 16``.

    Why: the first layer of a prediction lists, per 3-row tile, the input
    columns where any row is non-zero; the branch-free scalar loop
    (store, compare, add per column) is a sixth of a 10000-row MNIST
    first layer. One compress-store per 16 columns replaces 16
    iterations. (Only for AVX-512: on AVX2 LLVM expands it into a branch
    per lane, slower than the scalar loop.)"""
    if not (isinstance(flags, types.Array) and isinstance(flags.dtype, types.Integer)
            and isinstance(out, types.Array) and out.dtype == types.int32):
        return None
    sig = types.int64(flags, k0, out, c)

    def codegen(context, builder, signature, args):
        i1, i16, i32, i64 = (ir.IntType(b) for b in (1, 16, 32, 64))
        ivec = ir.VectorType(i32, 16)
        mvec = ir.VectorType(i1, 16)
        v, k0v, cv, o_data = _flags_vector(context, builder, signature, args, 16)
        mask = builder.icmp_unsigned("!=", v, ir.Constant(v.type, None))
        idx = builder.add(_splat_i32(builder, k0v, 16), ir.Constant(ivec, list(range(16))))
        # Compressed in a register, then all 16 lanes stored (the lanes past
        # the count land in out's slack): the compress-to-memory form is
        # microcoded on Zen 4, ~20x slower, and was most of a first layer's
        # time there.
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ivec, [ivec, ivec, mvec]),
            "llvm.x86.avx512.mask.compress.v16i32")
        packed = builder.call(compress, [idx, ir.Constant(ivec, None), mask])
        dst = builder.bitcast(builder.gep(o_data, [cv]), ivec.as_pointer())
        builder.store(packed, dst, align=4)
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i16, [i16]),
                                               "llvm.ctpop.i16")
        n = builder.call(ctpop, [builder.bitcast(mask, i16)])
        return builder.add(cv, builder.zext(n, i64))

    return sig, codegen


@intrinsic
def compress_nonzero8(typingctx, flags, k0, out, c, lut, SHIFT):
    """:func:`compress_nonzero16` without AVX-512, 8 at a time: stores the
    indices ``k0 + j`` (j < 8) with ``flags[k0 + j] != 0``, in order, at
    ``out[c:]`` (int32) and returns ``(c + their count, 0)``. ``lut``
    (256, 8) int32: row m lists the bits set in m (``sparse.compress_table``).
    ``flags`` must be readable up to ``k0 + 8``, ``out`` writable up to
    ``c + 8``.

    With ``SHIFT`` (a compile-time True) ``flags`` are a float row's bits
    (``X.view(uint)``): a value counts as non-zero when any bit but its
    sign is set (-0.0 is zero), and the second result counts the NaN/inf
    among the 8 (exponent all ones): one pass over a row both validates
    and lists it.

    Why: a compare, a movemask, one load of the table's row, an add and an
    unaligned store per 8 columns replace 8 iterations of the scalar loop
    (store, compare, add), about a quarter faster with the scan."""
    if not (isinstance(flags, types.Array) and isinstance(flags.dtype, types.Integer)
            and not flags.dtype.signed and isinstance(out, types.Array)
            and out.dtype == types.int32 and isinstance(lut, types.Array)
            and lut.dtype == types.int32 and isinstance(SHIFT, types.BooleanLiteral)):
        return None
    shift = SHIFT.literal_value
    sig = types.UniTuple(types.int64, 2)(flags, k0, out, c, lut, SHIFT)

    def codegen(context, builder, signature, args):
        i8, i32, i64 = (ir.IntType(b) for b in (8, 32, 64))
        ivec = ir.VectorType(i32, 8)
        v, k0v, cv, o_data = _flags_vector(context, builder, signature, args, 8)
        fvec = v.type
        elt = fvec.element
        l_data = context.make_array(signature.args[4])(context, builder, args[4]).data
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]),
                                               "llvm.ctpop.i64")

        def lanes(mask):  # <8 x i1> -> i64 with bit j = lane j
            return builder.zext(builder.bitcast(mask, i8), i64)

        bad = ir.Constant(i64, 0)
        if shift:
            v = builder.shl(v, ir.Constant(fvec, [1] * 8))
            # Shifted left by one, an all-ones exponent fills the top bits.
            width = elt.width
            exp_bits = 8 if width == 32 else 11
            top = ((1 << exp_bits) - 1) << (width - exp_bits)
            bad = builder.call(ctpop, [lanes(builder.icmp_unsigned(
                ">=", v, ir.Constant(fvec, [top] * 8)))])
        m = lanes(builder.icmp_unsigned("!=", v, ir.Constant(fvec, None)))
        row_ptr = builder.gep(l_data, [builder.mul(m, ir.Constant(i64, 8))])
        row = builder.load(builder.bitcast(row_ptr, ivec.as_pointer()), align=4)
        builder.store(builder.add(row, _splat_i32(builder, k0v, 8)),
                      builder.bitcast(builder.gep(o_data, [cv]), ivec.as_pointer()), align=4)
        count = builder.add(cv, builder.call(ctpop, [m]))
        return context.make_tuple(builder, signature.return_type, [count, bad])

    return sig, codegen


# --------------------------------------------------------------------------
# Atomics and waiting, for two threads that meet inside one parallel region
# (kernels/team.py). Numba has no atomic operations on arrays.
# --------------------------------------------------------------------------
def _int64_word(context, builder, aty, arr, i):
    ary = context.make_array(aty)(context, builder, arr)
    return builder.gep(ary.data, [i])


def _is_int64_array(arr):
    return isinstance(arr, types.Array) and arr.dtype == types.int64


@intrinsic
def atomic_add(typingctx, arr, i, v):
    """``arr[i] += v`` atomically (sequentially consistent); returns the
    value before. ``arr``: int64."""
    if not _is_int64_array(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        p = _int64_word(context, builder, signature.args[0], args[0], args[1])
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", p, v, "seq_cst")

    return types.int64(arr, i, v), codegen


@intrinsic
def atomic_load(typingctx, arr, i):
    """``arr[i]`` read with acquire ordering (what the writer stored
    before its :func:`atomic_add` is visible after it). ``arr``: int64."""
    if not _is_int64_array(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        p = _int64_word(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(p, "acquire", 8)

    return types.int64(arr, i), codegen


@intrinsic
def atomic_cas(typingctx, arr, i, old, new):
    """``arr[i] = new`` if ``arr[i] == old``, atomically; True if it did."""
    if not _is_int64_array(arr) or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        p = _int64_word(context, builder, signature.args[0], args[0], args[1])
        o = context.cast(builder, args[2], signature.args[2], types.int64)
        n = context.cast(builder, args[3], signature.args[3], types.int64)
        return builder.extract_value(builder.cmpxchg(p, o, n, "seq_cst", "seq_cst"), 1)

    return types.boolean(arr, i, old, new), codegen


_HAS_SCHED_YIELD = os.name == "posix"
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@intrinsic
def spin_pause(typingctx):
    """The spin-wait hint (x86 ``pause``): the waiting core yields its
    pipeline to its SMT sibling and leaves the loop without a memory-order
    flush."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def yield_cpu(typingctx):
    """``sched_yield()``: a waiting thread gives its core to the thread it
    waits for, when both share it (two processes, or a busy machine).
    (A no-op where there is no ``sched_yield``.)"""
    def codegen(context, builder, signature, args):
        if _HAS_SCHED_YIELD:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def pool_threads(typingctx):
    """The threads a parallel region started here runs on: what
    ``numba.get_num_threads()`` returns, by the symbol Numba's own
    parallel regions call (``numba.get_num_threads`` in a kernel embeds an
    address, and Numba will not cache the kernel)."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(types.intp.bitwidth), []),
            "get_num_threads")
        return builder.call(fn, [])

    return types.intp(), codegen


# --------------------------------------------------------------------------
# Floating-point mode: denormals flushed to zero while the kernels run.
#
# On Intel cores an operation with a denormal input or result (below ~1.2e-38
# in float32) takes a microcode assist of a hundred cycles or more, and
# training makes them: a confident softmax gives probabilities like
# exp(-90), whose gradients reach the layers below, and an epoch grew 2x
# slower as the model learned. So, as TensorFlow and XLA do in their compute
# threads, the engine runs each kernel call with the x86 MXCSR's
# flush-to-zero (results) and denormals-are-zero (inputs) bits set
# (:func:`flush_denormals`) and restores the caller's mode after. The pool
# threads of a parallel region keep their own mode, so each iteration
# adopts the mode of the thread that started the region
# (:func:`swap_fp_mode`): every thread computes alike, and code outside the
# kernels keeps IEEE denormals. Elsewhere than x86, a no-op.
# --------------------------------------------------------------------------
FLUSH_DENORMALS = 0x8040  # MXCSR's FTZ (bit 15) and DAZ (bit 6)


def _mxcsr_call(builder, name, slot):
    i8p = ir.IntType(8).as_pointer()
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p]),
                                        name)
    builder.call(fn, [builder.bitcast(slot, i8p)])


@intrinsic
def fp_mode(typingctx):
    """This thread's floating-point control word (x86 MXCSR; 0 elsewhere)."""
    def codegen(context, builder, signature, args):
        if not _X86:
            return ir.Constant(ir.IntType(64), 0)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.zext(builder.load(slot), ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def set_fp_mode(typingctx, mode):
    """Set this thread's floating-point control word (see :func:`fp_mode`)."""
    if not isinstance(mode, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        if _X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            v = context.cast(builder, args[0], signature.args[0], types.int64)
            builder.store(builder.trunc(v, ir.IntType(32)), slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(mode), codegen


@jit_inline
def swap_fp_mode(mode):
    """Run this thread in ``mode``; returns the mode it had. In a parallel
    region: ``mode = fp_mode()`` before it, ``own = swap_fp_mode(mode)``
    first in each iteration and ``swap_fp_mode(own)`` last."""
    own = fp_mode()
    if own != mode:
        set_fp_mode(mode)
    return own


@jit
def flush_denormals():
    """Flush denormals on this thread; returns the mode to restore with
    :func:`restore_fp_mode`."""
    return swap_fp_mode(fp_mode() | FLUSH_DENORMALS)


@jit
def restore_fp_mode(mode):
    swap_fp_mode(mode)

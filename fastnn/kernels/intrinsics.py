"""LLVM-level code Numba does not offer: fixed-size scratch arrays on the
stack, and the matmul tile's inner loop in explicit vectors (with a
software prefetch).

Prefetch. The matmul tiles walk a panel of B one row per step. When B's
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
    With AVX-512's 8 x 48 tile it also ran faster than the plain loop
    (`python bench/gemm_isa.py`, 2 threads: 100x784x100 nn 205 -> 233
    GFLOP/s, 512^3 nn 291 -> 340).
    """
    for lit in (MR, NR, VW, PF_ROWS):
        if not isinstance(lit, types.IntegerLiteral):
            return None
    mr, nr, vw, pf = (x.literal_value for x in (MR, NR, VW, PF_ROWS))
    if nr % vw or B.layout != "C" or A.dtype != acc.dtype or B.dtype != acc.dtype:
        return None  # B's rows are read as whole vectors
    nv = nr // vw
    dtype = acc.dtype
    sig = types.void(acc, A, a_base, a_rows, a_rstride, a_kstride, B, b_base, b_kstride, K,
                     MR, NR, VW, PF_ROWS)

    def codegen(context, builder, signature, args):
        (acc_p, a_arr, a0, arows, ars, aks, b_arr, b0, bks, kk) = args[:10]
        i64 = ir.IntType(64)
        elt = context.get_data_type(dtype)
        vec = ir.VectorType(elt, vw)

        def as_i64(v, ty):
            return context.cast(builder, v, ty, types.int64)

        a0, arows, ars, aks, b0, bks, kk = (
            as_i64(v, t) for v, t in zip((a0, arows, ars, aks, b0, bks, kk),
                                         (signature.args[2], signature.args[3],
                                          signature.args[4], signature.args[5],
                                          signature.args[7], signature.args[8],
                                          signature.args[9])))
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
        brow = builder.gep(bbase, [builder.mul(k, bks)])
        if pf:
            kpf = builder.add(k, ir.Constant(i64, pf))
            kpf = builder.select(builder.icmp_signed("<", kpf, kk), kpf,
                                 builder.sub(kk, ir.Constant(i64, 1)))
            prow = builder.gep(bbase, [builder.mul(kpf, bks)])
            line = 64 // context.get_abi_sizeof(elt)
            for c in range(0, nr, line):
                builder.call(pfn, [builder.bitcast(builder.gep(prow, [ir.Constant(i64, c)]),
                                                   i8p),
                                   ir.Constant(i32, 0), ir.Constant(i32, 3),
                                   ir.Constant(i32, 1)])
        bv = []
        for v in range(nv):
            ptr = builder.bitcast(builder.gep(brow, [ir.Constant(i64, v * vw)]),
                                  vec.as_pointer())
            bv.append(builder.load(ptr, align=context.get_abi_sizeof(elt)))
        new = []
        koff = builder.mul(k, aks)
        for r in range(mr):
            a = builder.load(builder.gep(rows[r], [koff]))
            s = builder.insert_element(ir.Constant(vec, ir.Undefined), a, ir.Constant(i64, 0))
            s = builder.shuffle_vector(s, ir.Constant(vec, ir.Undefined),
                                       ir.Constant(ir.VectorType(ir.IntType(32), vw), [0] * vw))
            for v in range(nv):
                new.append(builder.call(fma, [s, bv[v], accs[r * nv + v]]))
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

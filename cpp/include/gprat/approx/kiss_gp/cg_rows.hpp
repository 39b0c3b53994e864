#pragma once
/// The two fused row passes of KISS-GP's batched CG (KissGP::cg in kiss_gp.hpp), on the rows
/// [i0, i1) of row-major (n, c) blocks (one row's c columns contiguous). They are compiled for
/// several CPU levels (GPRAT_HOT_LOOP, core/dispatch.hpp): the baseline x86-64 build has only
/// SSE2, and at n = 10^5 the rank-k preconditioner's 2 k c multiply-adds per row and pass are
/// as costly as the memory traffic there. Every column's arithmetic is the same sequence of
/// operations whatever c (the loops over columns have no cross-column dependence), so a
/// column's result does not depend on the other columns of the block; it may differ in the
/// last bits between CPU levels (FMA).
#include <cstdint>

#include "gprat/core/dispatch.hpp"
#include "gprat/core/types.hpp"

namespace gprat::approx::kiss_gp {

/// Pass 1, per row i: q = W_i H + sigma2 d_i (not stored), x_i += alpha d_i, r_i -= alpha q,
/// and into the chunk's partial sums rr[j] += r_ij^2, S[l c + j] += L_il r_ij (rr, S zeroed
/// by the caller). Rows are taken four at a time for S (one load and store of S per four
/// rows, summed as ((L_0 r_0 + L_1 r_1) + L_2 r_2) + L_3 r_3 then added), the rest one by one:
/// a fixed order for a fixed row range. q is scratch of c entries.
template <typename T>
GPRAT_HOT_LOOP void cg_update_rows(Index i0, Index i1, Index c, Index k, Index P4, T sigma2, const T* alpha, const T* H,
                                   const std::int32_t* index, const T* value, const T* L, const T* D, T* X, T* R, T* rr,
                                   T* S, T* q)
{
    for (Index i = i0; i < i1; i += 4) {
        const Index e = i + 4 <= i1 ? i + 4 : i1;
        for (Index r = i; r < e; ++r) {  // (no lambda here: it would not be compiled into the clones)
            const T* di = D + r * c;
            T* xi = X + r * c;
            T* ri = R + r * c;
            const std::int32_t* idx = index + r * P4;
            const T* wv = value + r * P4;
            for (Index j = 0; j < c; ++j) q[j] = sigma2 * di[j];
            for (Index x = 0; x < P4; ++x) {  // q = W_i H + sigma2 d_i
                const T* h = H + static_cast<Index>(idx[x]) * c;
                const T wx = wv[x];
#pragma omp simd
                for (Index j = 0; j < c; ++j) q[j] += wx * h[j];
            }
#pragma omp simd
            for (Index j = 0; j < c; ++j) {
                xi[j] += alpha[j] * di[j];
                ri[j] -= alpha[j] * q[j];
                rr[j] += ri[j] * ri[j];
            }
        }
        if (e == i + 4) {
            const T* r0 = R + i * c;
            const T* r1 = r0 + c;
            const T* r2 = r1 + c;
            const T* r3 = r2 + c;
            const T* l0 = L + i * k;
            for (Index l = 0; l < k; ++l) {  // S += L_{i..i+3}^T r_{i..i+3}
                const T a0 = l0[l], a1 = l0[k + l], a2 = l0[2 * k + l], a3 = l0[3 * k + l];
                T* sl = S + l * c;
#pragma omp simd
                for (Index j = 0; j < c; ++j) sl[j] += ((a0 * r0[j] + a1 * r1[j]) + a2 * r2[j]) + a3 * r3[j];
            }
        } else {
            for (Index r = i; r < e; ++r) {
                const T* ri = R + r * c;
                const T* li = L + r * k;
                for (Index l = 0; l < k; ++l) {
                    const T a = li[l];
                    T* sl = S + l * c;
#pragma omp simd
                    for (Index j = 0; j < c; ++j) sl[j] += a * ri[j];
                }
            }
        }
    }
}

/// Pass 2, per row i: z = (r_i - L_i Y) / sigma2 (not stored), d_i = z + beta d_i for the
/// active columns, and into the group's partial sums rz[j] += r_ij z_j, dd[j] += d_ij^2 and
/// its (m, c) block G(u, :) += w_iu d_i (the next W^T D; all zeroed by the caller).
/// Yp is Y (k, c) with its rows padded to cp = 4 ceil(c / 4) columns (zeros), z scratch of cp
/// entries: z is formed four columns at a time in registers, z_j = ((r_j - L_i0 Y_0j) -
/// L_i1 Y_1j) - ..., the same order for every column.
template <typename T>
GPRAT_HOT_LOOP void cg_direction_rows(Index i0, Index i1, Index c, Index k, Index P4, T inv_sigma2, const T* beta,
                                      const char* active, const T* Yp, const T* L, const std::int32_t* index,
                                      const T* value, const T* R, T* D, T* rz, T* dd, T* G, T* z)
{
    const Index cp = (c + 3) / 4 * 4;
    for (Index i = i0; i < i1; ++i) {
        const T* ri = R + i * c;
        T* di = D + i * c;
        const T* li = L + i * k;
        for (Index j = 0; j < c; ++j) z[j] = ri[j];
        for (Index j = c; j < cp; ++j) z[j] = T(0);
        for (Index jb = 0; jb < cp; jb += 4) {  // z = r_i - L_i Y, four columns in registers
            T acc[4] = {z[jb], z[jb + 1], z[jb + 2], z[jb + 3]};
            for (Index l = 0; l < k; ++l) {
                const T a = li[l];
                const T* yl = Yp + l * cp + jb;
                for (int jj = 0; jj < 4; ++jj) acc[jj] -= a * yl[jj];
            }
            for (int jj = 0; jj < 4; ++jj) z[jb + jj] = acc[jj];
        }
#pragma omp simd
        for (Index j = 0; j < c; ++j) {
            z[j] *= inv_sigma2;
            rz[j] += ri[j] * z[j];
            di[j] = active[j] ? z[j] + beta[j] * di[j] : di[j];
            dd[j] += di[j] * di[j];
        }
        const std::int32_t* idx = index + i * P4;
        const T* wv = value + i * P4;
        for (Index x = 0; x < P4; ++x) {  // G(u, :) += w_iu d_i
            T* g = G + static_cast<Index>(idx[x]) * c;
            const T wx = wv[x];
#pragma omp simd
            for (Index j = 0; j < c; ++j) g[j] += wx * di[j];
        }
    }
}

}  // namespace gprat::approx::kiss_gp

#pragma once
/// The BLACS and ScaLAPACK routines the distributed exact GP calls, through their Fortran
/// interface (the one every ScaLAPACK ships: Netlib/Debian, MKL, Cray LibSci), LP64 integers.
/// Character arguments are passed with their hidden Fortran lengths at the end (1 each); C
/// implementations ignore the extra arguments.
///
/// Only here is ScaLAPACK declared, and only gprat._distributed includes this file.
#include <cstddef>

#include "gprat/core/check.hpp"
#include "gprat/core/types.hpp"
#include "gprat/distributed/block_cyclic.hpp"
#include "gprat/distributed/panel_gemm.hpp"

extern "C" {
int sys2blacs_handle_(int* fortran_comm);
void blacs_gridinit_(int* context, const char* order, int* nprow, int* npcol, std::size_t order_len);
void blacs_gridinfo_(const int* context, int* nprow, int* npcol, int* myrow, int* mycol);
void blacs_gridexit_(const int* context);
void descinit_(int* desc, const int* m, const int* n, const int* mb, const int* nb, const int* irsrc, const int* icsrc,
               const int* context, const int* lld, int* info);
void pdpotrf_(const char* uplo, const int* n, double* a, const int* ia, const int* ja, const int* desca, int* info,
              std::size_t uplo_len);
void pdpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* ia, const int* ja,
              const int* desca, double* b, const int* ib, const int* jb, const int* descb, int* info,
              std::size_t uplo_len);
void pdpotri_(const char* uplo, const int* n, double* a, const int* ia, const int* ja, const int* desca, int* info,
              std::size_t uplo_len);
void pdtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* ia, const int* ja,
              const int* desca, int* info, std::size_t uplo_len, std::size_t diag_len);
void pdlauum_(const char* uplo, const int* n, double* a, const int* ia, const int* ja, const int* desca,
              std::size_t uplo_len);
void pdtrsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
             const double* alpha, const double* a, const int* ia, const int* ja, const int* desca, double* b,
             const int* ib, const int* jb, const int* descb, std::size_t side_len, std::size_t uplo_len,
             std::size_t transa_len, std::size_t diag_len);
void pdtrmm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
             const double* alpha, const double* a, const int* ia, const int* ja, const int* desca, double* b,
             const int* ib, const int* jb, const int* descb, std::size_t side_len, std::size_t uplo_len,
             std::size_t transa_len, std::size_t diag_len);
void pdgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
             const double* a, const int* ia, const int* ja, const int* desca, const double* b, const int* ib,
             const int* jb, const int* descb, const double* beta, double* c, const int* ic, const int* jc,
             const int* descc, std::size_t transa_len, std::size_t transb_len);
void pdsyrk_(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha, const double* a,
             const int* ia, const int* ja, const int* desca, const double* beta, double* c, const int* ic,
             const int* jc, const int* descc, std::size_t uplo_len, std::size_t trans_len);
}

namespace gprat::distributed {

/// A ScaLAPACK array descriptor (9 integers) for layout A on BLACS context `context`.
struct Descriptor
{
    int d[9];
};

inline int to_int(Index v)
{
    GPRAT_EXPECTS(v >= 0 && v <= 2147483647, "ScaLAPACK (LP64) takes 32-bit integers; got " << v);
    return static_cast<int>(v);
}

inline Descriptor describe(const BlockCyclic& A, int context)
{
    Descriptor desc{};
    const int m = to_int(A.m), n = to_int(A.n), mb = to_int(A.mb), nb = to_int(A.nb), zero = 0, lld = to_int(A.lld);
    int info = 0;
    descinit_(desc.d, &m, &n, &mb, &nb, &zero, &zero, &context, &lld, &info);
    GPRAT_EXPECTS(info == 0, "descinit refused the layout (argument " << -info << ")");
    return desc;
}

/// Where a recursive split of an n x n diagonal submatrix falls: the first part's order n1, a
/// multiple of the block size nb near n / 2 (block-aligned submatrices keep PBLAS on its fast
/// path), or n when the submatrix is at most `base` (then LAPACK-style ScaLAPACK takes it).
inline int split_order(int n, int nb, int base)
{
    if (n <= base || n <= nb) return n;
    const int n1 = ((n / 2 + nb - 1) / nb) * nb;
    return n1 < n ? n1 : n;
}

/// C <- C + alpha op(A) B on block-aligned submatrices of `a` (1-based starts), the recursions'
/// block products: by panel_gemm over `grid` (panel_gemm.hpp: SUMMA's panels over MPI, one local
/// gemm each), or by PBLAS's pdgemm when `grid` is null.
inline void block_product(const PanelGrid* grid, char trans_a, int m, int n, int k, double alpha, double* a, int ia,
                          int ja, int ib, int jb, int ic, int jc, const int* desc)
{
    if (grid != nullptr) {
        panel_gemm(*grid, trans_a, m, n, k, alpha, a, ia, ja, ib, jb, ic, jc, desc);
        return;
    }
    const char N = 'N';
    const double one = 1.0;
    pdgemm_(&trans_a, &N, &m, &n, &k, &alpha, a, &ia, &ja, desc, a, &ib, &jb, desc, &one, a, &ic, &jc, desc, 1, 1);
}

/// B <- alpha op(T) B (side 'L') or B <- alpha B T (side 'R', op = none) for the lower triangular
/// T of order t at (it, it), B of m x n at (ib, jb) (1-based), by recursion on T = [T11 0; T21 T22]:
///   'L', 'N': T B   = [T11 B1; T21 B1 + T22 B2]       (B1, B2: the first t1 and the other rows)
///   'L', 'T': T^T B = [T11^T B1 + T21^T B2; T22^T B2]
///   'R', 'N': B T   = [B1 T11 + B2 T21, B2 T22]       (B1, B2: the first t1 and the other columns)
/// each block product by block_product, each diagonal block by recursion, below `base` by pdtrmm.
/// The updates are ordered so that every product reads blocks of B not yet overwritten.
inline void trmm_lower(char side, char trans, int t, int it, int m, int n, int ib, int jb, double alpha, double* a,
                       const int* desc, int base, const PanelGrid* grid)
{
    const int t1 = split_order(t, desc[5], base);
    const char lower = 'L', nonunit = 'N';
    if (t1 == t) {
        pdtrmm_(&side, &lower, &trans, &nonunit, &m, &n, &alpha, a, &it, &it, desc, a, &ib, &jb, desc, 1, 1, 1, 1);
        return;
    }
    const int t2 = t - t1, it2 = it + t1;
    if (side == 'L' && trans == 'N') {
        const int ib2 = ib + t1;
        trmm_lower(side, trans, t2, it2, t2, n, ib2, jb, alpha, a, desc, base, grid);         // B2 <- a T22 B2
        block_product(grid, 'N', t2, n, t1, alpha, a, it2, it, ib, jb, ib2, jb, desc);        // B2 += a T21 B1
        trmm_lower(side, trans, t1, it, t1, n, ib, jb, alpha, a, desc, base, grid);           // B1 <- a T11 B1
    } else if (side == 'L') {
        const int ib2 = ib + t1;
        trmm_lower(side, trans, t1, it, t1, n, ib, jb, alpha, a, desc, base, grid);           // B1 <- a T11^T B1
        block_product(grid, 'T', t1, n, t2, alpha, a, it2, it, ib2, jb, ib, jb, desc);        // B1 += a T21^T B2
        trmm_lower(side, trans, t2, it2, t2, n, ib2, jb, alpha, a, desc, base, grid);         // B2 <- a T22^T B2
    } else {
        const int jb2 = jb + t1;
        trmm_lower(side, trans, t1, it, m, t1, ib, jb, alpha, a, desc, base, grid);           // B1 <- a B1 T11
        block_product(grid, 'N', m, t1, t2, alpha, a, ib, jb2, it2, it, ib, jb, desc);        // B1 += a B2 T21
        trmm_lower(side, trans, t2, it2, m, t2, ib, jb2, alpha, a, desc, base, grid);         // B2 <- a B2 T22
    }
}

/// C <- C + A^T A (lower part) for C of order c at (ic, ic) and A of k x c at (ia, ja) (1-based),
/// by recursion on C = [C11 .; C21 C22] and A = [A1 A2] (the first c1 and the other columns):
///   C11 += A1^T A1, C21 += A2^T A1 (block_product), C22 += A2^T A2; below `base` by pdsyrk.
inline void syrk_lower(int c, int ic, int k, int ia, int ja, double* a, const int* desc, int base,
                       const PanelGrid* grid)
{
    const int c1 = split_order(c, desc[5], base);
    const double one = 1.0;
    const char lower = 'L', T = 'T';
    if (c1 == c) {
        pdsyrk_(&lower, &T, &c, &k, &one, a, &ia, &ja, desc, &one, a, &ic, &ic, desc, 1, 1);
        return;
    }
    const int c2 = c - c1, ic2 = ic + c1, ja2 = ja + c1;
    syrk_lower(c1, ic, k, ia, ja, a, desc, base, grid);                                 // C11 += A1^T A1
    block_product(grid, 'T', c2, c1, k, 1.0, a, ia, ja2, ia, ja, ic2, ic, desc);        // C21 += A2^T A1
    syrk_lower(c2, ic2, k, ia, ja2, a, desc, base, grid);                               // C22 += A2^T A2
}

/// L <- L^{-1} for the lower triangular n x n submatrix L at (i, i) (1-based), in place, by
/// recursion on 2 x 2 blocks: with L = [A 0; B C] (A of order n1, C of order n2),
///   L^{-1} = [A^{-1}  0; -C^{-1} B A^{-1}  C^{-1}],
/// so, in this order: A <- A^{-1} and C <- C^{-1} (recursion), B <- B A^{-1} (trmm_lower 'R'),
/// B <- -C^{-1} B (trmm_lower 'L', alpha = -1). The two products are themselves recursions whose
/// off-diagonal work is 'N','N' block_product (trmm_lower: for B T with T = [T1 0; T2 T3] and
/// B = [B1 B2], B1 <- B1 T1, B1 += B2 T2, B2 <- B2 T3). Below `base` rows pdtrtri takes the
/// diagonal blocks and pdtrmm the products. Same flops as pdtrtri (n^3/3): 2 (n/2)^3 in the
/// products and 2 (n/2)^3/3 in the halves, splits block-aligned (split_order).
/// @return pdtrtri's info for the whole submatrix: 0, or k > 0 when L(i+k-1, i+k-1) is zero
///         (the first such diagonal entry; L then holds no inverse).
inline int trtri_lower(int n, double* a, int i, const int* desc, int base, const PanelGrid* grid)
{
    const int n1 = split_order(n, desc[5], base);
    if (n1 == n) {
        const char lower = 'L', nonunit = 'N';
        int info = 0;
        pdtrtri_(&lower, &nonunit, &n, a, &i, &i, desc, &info, 1, 1);
        return info;
    }
    const int n2 = n - n1, i2 = i + n1;
    // Every call runs on every rank even after a nonzero info (an early return on one rank
    // would leave the others waiting in the next collective); the caller reduces info.
    const int info1 = trtri_lower(n1, a, i, desc, base, grid);               // A <- A^{-1}
    const int info2 = trtri_lower(n2, a, i2, desc, base, grid);              // C <- C^{-1}
    trmm_lower('R', 'N', n1, i, n2, n1, i2, i, 1.0, a, desc, base, grid);    // B <- B A^{-1}
    trmm_lower('L', 'N', n2, i2, n2, n1, i2, i, -1.0, a, desc, base, grid);  // B <- -C^{-1} B
    if (info1 != 0) return info1;
    return info2 > 0 ? info2 + n1 : info2;
}

/// M <- lower(M^T M) for the lower triangular n x n submatrix M at (i, i) (1-based), by
/// recursion on 2 x 2 blocks: with M = [A 0; B C],
///   M^T M = [A^T A + B^T B   B^T C; C^T B   C^T C],
/// so, in this order (each step reads only what is still unchanged): A <- lower(A^T A)
/// (recursion), A <- A + B^T B (pdsyrk, lower), B <- C^T B (pdtrmm), C <- lower(C^T C)
/// (recursion); below `base` rows pdlauum. The pdsyrk and pdtrmm are themselves recursions onto
/// block_product (syrk_lower, trmm_lower). Same flops as pdlauum (n^3/3), in large products instead
/// of pdlauum's nb-wide row panels: 5-30 % faster on Netlib's ScaLAPACK 2.2.1 here (measured in
/// docs/distributed.md; the same recursion for pdtrtri was slower than pdtrtri, so it is not used).
inline void lauum_lower(int n, double* a, int i, const int* desc, int base, const PanelGrid* grid)
{
    const int n1 = split_order(n, desc[5], base);
    const char lower = 'L';
    if (n1 == n) {
        pdlauum_(&lower, &n, a, &i, &i, desc, 1);
        return;
    }
    const int n2 = n - n1, i2 = i + n1;
    lauum_lower(n1, a, i, desc, base, grid);                             // A <- lower(A^T A)
    syrk_lower(n1, i, n2, i2, i, a, desc, base, grid);                   // A <- A + B^T B
    trmm_lower('L', 'T', n2, i2, n2, n1, i2, i, 1.0, a, desc, base, grid);  // B <- C^T B
    lauum_lower(n2, a, i2, desc, base, grid);                            // C <- lower(C^T C)
}

}  // namespace gprat::distributed

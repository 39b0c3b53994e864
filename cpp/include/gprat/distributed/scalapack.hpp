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

}  // namespace gprat::distributed

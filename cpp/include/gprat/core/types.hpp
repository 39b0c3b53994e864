#pragma once
/// Basic vocabulary shared by every layer: index type and the BLAS-style enums.
#include <cstdint>

namespace gprat {

/// Signed index for rows, columns, tile counts (PLASMA vocabulary: n, m, d, nb, nt, mt).
using Index = std::int64_t;

enum class Uplo { Lower, Upper };
enum class Op { NoTrans, Trans };
enum class Side { Left, Right };
enum class Diag { NonUnit, Unit };

}  // namespace gprat

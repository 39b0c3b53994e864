#pragma once
/// C <- C + alpha op(A) B on block-aligned submatrices of one block-cyclic matrix: the block
/// products of the distributed inversion (scalapack.hpp's recursions), by panels exchanged with
/// MPI and one local gemm per panel, in place of PBLAS's pdgemm.
///
/// Why not pdgemm: on Debian's Netlib PBLAS (ScaLAPACK 2.2.1 over OpenBLAS 0.3.21), a 1 x 2 grid
/// ran pdgemm of order 8192 at 34-38 GFLOP/s, about one core's dgemm rate (25-35 GFLOP/s per rank
/// alone), while the same product by panel broadcasts and local dgemm reached 56-66 GFLOP/s
/// (benchmarks/pdgemm_rate.c; docs/distributed.md, "The block products"). The inversion's work is mostly these
/// products, so that rate is the step's.
///
/// The algorithm (SUMMA's: for each panel of panel_columns (whole blocks) columns of op(A) and as
/// many rows of B, every rank
/// receives the rows of the op(A) panel that match its rows of C and the columns of the B panel
/// that match its columns of C, then C_local += alpha op(A)_panel B_panel):
/// - Blocks are exchanged whole (block I of the op(A) panel goes from its owner to every rank of
///   the grid row that holds C's row block I; block J of the B panel to every rank of the grid
///   column that holds C's column block J), in one MPI_Alltoallv per panel. This covers
///   submatrices whose rows are distributed differently from C's (a shifted start) and
///   op(A) = A^T, whose panel is a row panel of A spread over grid columns, transposed on
///   packing. Each rank receives what SUMMA's broadcasts would give it (mloc nb + nb nloc per
///   panel); the owner sends each block to each of the P_c (or P_r) ranks that need it directly,
///   not down a tree.
/// - Submatrices start on block boundaries ((i - 1) % nb == 0 for every start index i; the
///   recursions split at multiples of nb) and end on one or at the matrix's edge, so that every
///   block of a submatrix is a whole block of the matrix, or its ragged last one.
///
/// The MPI status of every call is checked; a failure throws (an MPI error handler that aborts
/// ends the job first).
#include <mpi.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/core/types.hpp"
#include "gprat/linalg/tile_kernels.hpp"

extern "C" {
int blacs_pnum_(const int* context, const int* prow, const int* pcol);
}

namespace gprat::distributed {

/// Columns of op(A) (rows of B) exchanged per round by default: whole blocks, at least one (one
/// block at nb = 256, SUMMA's usual panel). Wider panels mean fewer exchanges (each a
/// synchronisation point) and local gemms of larger inner order; 1024 columns were no faster in
/// the step at n = 8192 on 2 ranks (within this machine's 10 % run-to-run spread).
inline constexpr Index PANEL_COLUMNS = 256;

/// The process grid of a ScaLAPACK descriptor, the communicator its BLACS context was made from,
/// and the panel width (columns per exchange, rounded down to whole blocks, at least one).
struct PanelGrid
{
    MPI_Comm comm;
    int context, nprow, npcol, myrow, mycol;
    Index panel_columns = PANEL_COLUMNS;
};

inline void check_mpi(int status, const char* call)
{
    if (status != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING];
        int length = 0;
        MPI_Error_string(status, text, &length);
        throw std::runtime_error(std::string(call) + " failed: " + std::string(text, static_cast<std::size_t>(length)));
    }
}

namespace detail {

/// One nb-block of a panel: where it lives (rank, local offsets in the owner's array), its shape
/// as it arrives (rows x cols of the op(A) or B panel), and which grid row or column needs it.
struct PanelBlock
{
    int source;             // MPI rank of the owner
    Index local_row, local_col;  // in the owner's local array
    Index rows, cols;       // as received (op(A): rows of C's block x kb; B: kb x columns of C's block)
    bool transpose;         // stored transposed at the owner (op(A) = A^T)
    int need_row, need_col;  // the grid row (A panel) or column (B panel) that needs it; -1: every one
    Index panel_row, panel_col;  // where it goes in the receiving rank's panel
};

inline int owner_rank(const PanelGrid& g, Index global_row_block, Index global_col_block)
{
    const int pr = static_cast<int>(global_row_block % g.nprow), pc = static_cast<int>(global_col_block % g.npcol);
    return blacs_pnum_(&g.context, &pr, &pc);
}

}  // namespace detail

/// C <- C + alpha op(A) B, op(A) = A ('N') or A^T ('T'), C m x n at (ic, jc), op(A) m x k with A at
/// (ia, ja), B k x n at (ib, jb): 1-based submatrices of the one block-cyclic matrix `a` described
/// by `desc` (square nb x nb blocks, first block on process (0, 0)), disjoint from C. Collective
/// over the grid. See the file comment for the algorithm and the block-alignment requirement.
inline void panel_gemm(const PanelGrid& g, char trans_a, int m, int n, int k, double alpha, double* a, int ia, int ja,
                       int ib, int jb, int ic, int jc, const int* desc)
{
    const Index nb = desc[5], lld = desc[8];
    GPRAT_EXPECTS(desc[4] == desc[5], "panel_gemm needs square blocks; got " << desc[4] << " x " << desc[5]);
    for (int start : {ia, ja, ib, jb, ic, jc}) {
        GPRAT_EXPECTS((start - 1) % nb == 0, "panel_gemm needs block-aligned submatrices; got start " << start
                                                                                                     << " with nb " << nb);
    }
    if (m == 0 || n == 0 || k == 0) { return; }
    const bool transposed = trans_a == 'T';
    const Index row_blocks = (m + nb - 1) / nb, col_blocks = (n + nb - 1) / nb, panels = (k + nb - 1) / nb;
    const Index c_row0 = (ic - 1) / nb, c_col0 = (jc - 1) / nb;  // global block indices of C's first block
    const Index a_row0 = (ia - 1) / nb, a_col0 = (ja - 1) / nb, b_row0 = (ib - 1) / nb, b_col0 = (jb - 1) / nb;
    auto extent = [nb](Index total, Index block) { return std::min(nb, total - block * nb); };
    auto local_offset = [nb](Index global_block, int procs) { return (global_block / procs) * nb; };
    int ranks = 0, me = 0;
    check_mpi(MPI_Comm_size(g.comm, &ranks), "MPI_Comm_size");
    check_mpi(MPI_Comm_rank(g.comm, &me), "MPI_Comm_rank");
    GPRAT_EXPECTS(ranks == g.nprow * g.npcol, "panel_gemm: the communicator has " << ranks << " ranks but the grid is "
                                                                                  << g.nprow << " x " << g.npcol);
    std::vector<int> row_of(ranks, -1), col_of(ranks, -1);  // each rank's grid coordinates, by BLACS's own map
    for (int pr = 0; pr < g.nprow; ++pr) {
        for (int pc = 0; pc < g.npcol; ++pc) {
            const int r = blacs_pnum_(&g.context, &pr, &pc);
            GPRAT_EXPECTS(r >= 0 && r < ranks, "BLACS maps grid process (" << pr << ", " << pc << ") to rank " << r);
            row_of[r] = pr;
            col_of[r] = pc;
        }
    }
    // Where each of C's row (column) blocks sits in the op(A) (B) panel of the ranks that hold it:
    // the rows (columns) of the earlier blocks on the same grid row (column). What is filled on
    // this rank's grid row and column is its part of C, contiguous in the local array from the
    // first such block on because the submatrix is block-aligned.
    std::vector<Index> row_at(row_blocks), col_at(col_blocks), filled_row(g.nprow, 0), filled_col(g.npcol, 0);
    for (Index I = 0; I < row_blocks; ++I) {
        auto& f = filled_row[(c_row0 + I) % g.nprow];
        row_at[I] = f;
        f += extent(m, I);
    }
    for (Index J = 0; J < col_blocks; ++J) {
        auto& f = filled_col[(c_col0 + J) % g.npcol];
        col_at[J] = f;
        f += extent(n, J);
    }
    const Index my_rows = filled_row[g.myrow], my_cols = filled_col[g.mycol];
    // C's first row (column) block on this grid row (column): block c_row0 + I with I < nprow
    const Index first_row = local_offset(c_row0 + (g.myrow - c_row0 % g.nprow + g.nprow) % g.nprow, g.nprow);
    const Index first_col = local_offset(c_col0 + (g.mycol - c_col0 % g.npcol + g.npcol) % g.npcol, g.npcol);
    const Index width = std::max<Index>(1, g.panel_columns / nb);  // blocks per panel
    std::vector<double> a_panel(static_cast<std::size_t>(std::max<Index>(1, my_rows * width * nb)));
    std::vector<double> b_panel(static_cast<std::size_t>(std::max<Index>(1, width * nb * my_cols)));
    std::vector<detail::PanelBlock> blocks;
    std::vector<int> send_counts(ranks), send_displs(ranks), recv_counts(ranks), recv_displs(ranks);
    std::vector<double> send, recv;
    std::vector<Index> at(ranks);

    for (Index p0 = 0; p0 < panels; p0 += width) {
        const Index p1 = std::min(panels, p0 + width);       // this panel: k-blocks p0 .. p1 - 1
        const Index kb = std::min<Index>(k, p1 * nb) - p0 * nb;  // its width in columns of op(A)
        // The panel's blocks, in one order that every rank derives alike: op(A)'s, then B's.
        blocks.clear();
        for (Index p = p0; p < p1; ++p) {
            const Index kp = extent(k, p), at_k = (p - p0) * nb;
            for (Index I = 0; I < row_blocks; ++I) {
                const Index rows = extent(m, I);
                const int need_row = static_cast<int>((c_row0 + I) % g.nprow);
                // op(A)(I, p) is A's block (I, p), or for op(A) = A^T A's block (p, I) transposed
                const Index ar = a_row0 + (transposed ? p : I), ac = a_col0 + (transposed ? I : p);
                blocks.push_back({detail::owner_rank(g, ar, ac), local_offset(ar, g.nprow), local_offset(ac, g.npcol),
                                  rows, kp, transposed, need_row, -1, row_at[I], at_k});
            }
            for (Index J = 0; J < col_blocks; ++J) {
                blocks.push_back({detail::owner_rank(g, b_row0 + p, b_col0 + J), local_offset(b_row0 + p, g.nprow),
                                  local_offset(b_col0 + J, g.npcol), kp, extent(n, J), false, -1,
                                  static_cast<int>((c_col0 + J) % g.npcol), at_k, col_at[J]});
            }
        }
        auto needs = [&](const detail::PanelBlock& b, int rank_row, int rank_col) {
            return b.need_row >= 0 ? rank_row == b.need_row : rank_col == b.need_col;
        };
        // Counts: what this rank sends to each rank and receives from each, in block order.
        std::fill(send_counts.begin(), send_counts.end(), 0);
        std::fill(recv_counts.begin(), recv_counts.end(), 0);
        for (int r = 0; r < ranks; ++r) {
            const int rank_row = row_of[r], rank_col = col_of[r];
            for (const auto& b : blocks) {
                const int size = static_cast<int>(b.rows * b.cols);
                if (b.source == me && needs(b, rank_row, rank_col)) { send_counts[r] += size; }
                if (b.source == r && needs(b, g.myrow, g.mycol)) { recv_counts[r] += size; }
            }
        }
        Index send_total = 0, recv_total = 0;
        for (int r = 0; r < ranks; ++r) {
            send_displs[r] = static_cast<int>(send_total);
            recv_displs[r] = static_cast<int>(recv_total);
            send_total += send_counts[r];
            recv_total += recv_counts[r];
        }
        GPRAT_EXPECTS(send_total < 2147483647 && recv_total < 2147483647,
                      "panel_gemm: a panel of " << std::max(send_total, recv_total) << " entries exceeds MPI's int counts");
        send.resize(static_cast<std::size_t>(std::max<Index>(1, send_total)));
        recv.resize(static_cast<std::size_t>(std::max<Index>(1, recv_total)));
        // Pack: for each destination, this rank's blocks it needs, transposing op(A) = A^T blocks.
        for (int r = 0; r < ranks; ++r) { at[r] = send_displs[r]; }
        for (int r = 0; r < ranks; ++r) {
            const int rank_row = row_of[r], rank_col = col_of[r];
            for (const auto& b : blocks) {
                if (b.source != me || !needs(b, rank_row, rank_col)) { continue; }
                double* out = send.data() + at[r];
                const double* src = a + b.local_row + b.local_col * lld;
                for (Index j = 0; j < b.cols; ++j) {
                    for (Index i = 0; i < b.rows; ++i) {
                        out[i + j * b.rows] = b.transpose ? src[j + i * lld] : src[i + j * lld];
                    }
                }
                at[r] += b.rows * b.cols;
            }
        }
        check_mpi(MPI_Alltoallv(send.data(), send_counts.data(), send_displs.data(), MPI_DOUBLE, recv.data(),
                                recv_counts.data(), recv_displs.data(), MPI_DOUBLE, g.comm),
                  "MPI_Alltoallv");
        if (my_rows == 0 || my_cols == 0) { continue; }
        // Unpack each block at its place: op(A) panel my_rows x kb, B panel kb x my_cols (column-major).
        for (int r = 0; r < ranks; ++r) { at[r] = recv_displs[r]; }
        for (const auto& b : blocks) {
            if (!needs(b, g.myrow, g.mycol)) { continue; }
            const double* in = recv.data() + at[b.source];
            const bool of_a = b.need_row >= 0;
            double* panel = of_a ? a_panel.data() : b_panel.data();
            const Index ld = of_a ? my_rows : kb;
            for (Index j = 0; j < b.cols; ++j) {
                std::copy(in + j * b.rows, in + (j + 1) * b.rows, panel + b.panel_row + (b.panel_col + j) * ld);
            }
            at[b.source] += b.rows * b.cols;
        }
        using linalg::tile::TileView;
        linalg::tile::gemm(Op::NoTrans, Op::NoTrans, alpha, TileView<double>(a_panel.data(), my_rows, kb, my_rows),
                           TileView<double>(b_panel.data(), kb, my_cols, kb), 1.0,
                           TileView<double>(a + first_row + first_col * lld, my_rows, my_cols, lld));
    }
}

}  // namespace gprat::distributed

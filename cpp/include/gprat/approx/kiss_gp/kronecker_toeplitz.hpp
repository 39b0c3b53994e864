#pragma once
/// K_UU = s0 (T_0 (x) T_1 (x) .. (x) T_{d-1}) on the grid of grid.hpp, each T_k a symmetric
/// Toeplitz matrix given by its first column t_k (t_k[r] = covariance of two grid points r
/// spacings apart along dimension k, divided by s0 = k(x, x)), and its products with a block of
/// c vectors stored row-major (m, c): entry (u, j) at V[u c + j].
///
/// The Kronecker product is applied one dimension at a time (vec-trick):
///   (T_0 (x) .. (x) T_{d-1}) V = P_{d-1} .. P_0 V,   P_k = I (x) .. (x) T_k (x) .. (x) I,
/// P_k acting on every fiber along dimension k: out(.., i_k, ..) = sum_j t_k[|i_k - j|] in(.., j, ..).
///
/// Each fiber product is either
/// - direct and banded: t_k[r] is dropped beyond the band B_k, the last r with
///   |t_k[r]| > 1e-18 max|t_k| (what is dropped is below 1e-18 m_k of the largest entry: under
///   the rounding of the product); cost m (2 B_k - 1) c; handles any m_k (8192 and more);
/// - or by FFT through circulant embedding when CMake found FFTW (GPRAT_WITH_FFTW): the 2 m_k
///   circulant with first column [t_0 .. t_{m_k-1}, 0, t_{m_k-1} .. t_1] has the real spectrum
///   lambda = FFT(c), and T v = first m_k entries of IFFT(lambda o FFT([v; 0])); cost
///   O(m c log m_k). It is used where it is cheaper than the band (2 B_k - 1 > 10 log2(2 m_k)).
/// Every output entry is computed by one task in a fixed order, so results do not depend on the
/// thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#ifndef GPRAT_WITH_FFTW
#define GPRAT_WITH_FFTW 0
#endif
#if GPRAT_WITH_FFTW
#include <fftw3.h>
#endif

#include "gprat/approx/kiss_gp/grid.hpp"
#include "gprat/approx/kiss_gp/parallel.hpp"
#include "gprat/core/check.hpp"
#include "gprat/core/types.hpp"

namespace gprat::approx::kiss_gp {

/// Entries below this fraction of the largest are outside the band of a Toeplitz factor.
inline constexpr double band_tolerance = 1e-18;

#if GPRAT_WITH_FFTW
/// FFTW's planner is not thread-safe; execution of an existing plan on new arrays is.
inline std::mutex& fftw_planner_mutex()
{
    static std::mutex m;
    return m;
}

/// The real-to-complex and complex-to-real plans of length L and the circulant's spectrum.
struct CirculantFFT
{
    Index L = 0;
    fftw_plan forward = nullptr, backward = nullptr;
    std::vector<double> spectrum;  ///< lambda (L/2 + 1 real values), divided by L

    CirculantFFT(const std::vector<double>& t, Index m) : L(2 * m)
    {
        double* buf = fftw_alloc_real(static_cast<std::size_t>(L));
        fftw_complex* out = fftw_alloc_complex(static_cast<std::size_t>(L / 2 + 1));
        {
            std::lock_guard lock(fftw_planner_mutex());
            forward = fftw_plan_dft_r2c_1d(static_cast<int>(L), buf, out, FFTW_ESTIMATE);
            backward = fftw_plan_dft_c2r_1d(static_cast<int>(L), out, buf, FFTW_ESTIMATE);
        }
        // c = [t_0 .. t_{m-1}, 0, t_{m-1} .. t_1]
        for (Index r = 0; r < m; ++r) buf[r] = t[static_cast<std::size_t>(r)];
        buf[m] = 0.0;
        for (Index r = 1; r < m; ++r) buf[L - r] = t[static_cast<std::size_t>(r)];
        fftw_execute_dft_r2c(forward, buf, out);
        spectrum.resize(static_cast<std::size_t>(L / 2 + 1));
        for (Index q = 0; q <= L / 2; ++q) spectrum[static_cast<std::size_t>(q)] = out[q][0] / static_cast<double>(L);
        fftw_free(buf);
        fftw_free(out);
    }
    CirculantFFT(const CirculantFFT&) = delete;
    CirculantFFT& operator=(const CirculantFFT&) = delete;
    ~CirculantFFT()
    {
        std::lock_guard lock(fftw_planner_mutex());
        fftw_destroy_plan(forward);
        fftw_destroy_plan(backward);
    }
};
#endif

/// One symmetric Toeplitz factor: its first column (length m), band and, with FFTW, its FFT.
struct ToeplitzFactor
{
    std::vector<double> t;
    Index band = 1;  ///< t[r] = 0 for r >= band (dropped)
#if GPRAT_WITH_FFTW
    std::shared_ptr<CirculantFFT> fft;  ///< set when the FFT is cheaper than the band
#endif

    ToeplitzFactor() = default;
    /// @param allow_fft  false keeps the banded direct product even where FFTW would be cheaper (tests)
    explicit ToeplitzFactor(std::vector<double> column, bool allow_fft = true) : t(std::move(column))
    {
        const Index m = static_cast<Index>(t.size());
        double big = 0.0;
        for (double v : t) big = std::max(big, std::abs(v));
        band = 1;
        for (Index r = m - 1; r >= 0; --r)
            if (std::abs(t[static_cast<std::size_t>(r)]) > band_tolerance * big) {
                band = r + 1;
                break;
            }
        for (Index r = band; r < m; ++r) t[static_cast<std::size_t>(r)] = 0.0;
#if GPRAT_WITH_FFTW
        if (allow_fft && m >= 64 && static_cast<double>(2 * band - 1) > 10.0 * std::log2(2.0 * static_cast<double>(m)))
            fft = std::make_shared<CirculantFFT>(t, m);
#else
        (void)allow_fft;
#endif
    }
    Index m() const noexcept { return static_cast<Index>(t.size()); }
    /// t[|r|], zero beyond the band.
    double at(Index r) const noexcept
    {
        r = r < 0 ? -r : r;
        return r < band ? t[static_cast<std::size_t>(r)] : 0.0;
    }
};

/// Whether the library was built with FFTW (Toeplitz products by FFT).
inline constexpr bool with_fft = GPRAT_WITH_FFTW != 0;

/// out <- scale P_k in on the (m, c) row-major block: the product of factor f along dimension k
/// (stride s_k in grid points, m_k = f.m()).
inline void apply_axis(const ToeplitzFactor& f, Index stride, Index m_total, const double* in, double* out, Index c,
                       double scale)
{
    const Index mk = f.m();
#if GPRAT_WITH_FFTW
    if (f.fft) {
        // fibers: (outer, inner) with u = outer (mk stride) + i stride + inner; one task per
        // group of fibers, each with its own FFT buffers
        const Index inner_count = stride;
        const Index outer_count = m_total / (mk * stride);
        const Index fibers = outer_count * inner_count * c;
        const CirculantFFT& F = *f.fft;
        const Index per_task = std::max<Index>(1, (Index{1} << 18) / F.L);
        parallel_chunks("kiss_toeplitz_fft", fibers, per_task, [&](Index b, Index e) {
            double* buf = fftw_alloc_real(static_cast<std::size_t>(F.L));
            fftw_complex* spec = fftw_alloc_complex(static_cast<std::size_t>(F.L / 2 + 1));
            for (Index q = b; q < e; ++q) {
                const Index j = q % c, fiber = q / c;
                const Index inner = fiber % inner_count, outer = fiber / inner_count;
                const Index base = outer * mk * stride + inner;
                for (Index i = 0; i < mk; ++i) buf[i] = in[(base + i * stride) * c + j];
                for (Index i = mk; i < F.L; ++i) buf[i] = 0.0;
                fftw_execute_dft_r2c(F.forward, buf, spec);  // FFT([v; 0])
                for (Index h = 0; h <= F.L / 2; ++h) {      // lambda o (.)
                    const double l = F.spectrum[static_cast<std::size_t>(h)] * scale;
                    spec[h][0] *= l;
                    spec[h][1] *= l;
                }
                fftw_execute_dft_c2r(F.backward, spec, buf);  // IFFT, first mk entries
                for (Index i = 0; i < mk; ++i) out[(base + i * stride) * c + j] = buf[i];
            }
            fftw_free(buf);
            fftw_free(spec);
        });
        return;
    }
#endif
    const Index B = f.band;
    const Index per_task = std::max<Index>(1, (Index{1} << 16) / std::max<Index>(1, (2 * B - 1) * c));
    parallel_chunks("kiss_toeplitz", m_total, per_task, [&](Index b, Index e) {
        for (Index u = b; u < e; ++u) {
            const Index i = (u / stride) % mk;
            const Index lo = std::max<Index>(0, i - (B - 1)), hi = std::min(mk - 1, i + (B - 1));
            double* o = out + u * c;
            for (Index j = 0; j < c; ++j) o[j] = 0.0;
            for (Index q = lo; q <= hi; ++q) {  // out(u) += t[|i - q|] in(u + (q - i) s_k)
                const double coef = scale * f.t[static_cast<std::size_t>(i > q ? i - q : q - i)];
                const double* x = in + (u + (q - i) * stride) * c;
#pragma omp simd
                for (Index j = 0; j < c; ++j) o[j] += coef * x[j];
            }
        }
    });
}

/// out <- scale (F_0 (x) .. (x) F_{d-1}) in for the (m, c) block `in` (not modified); work is
/// an (m, c) scratch block. factors[k] is the factor of dimension k.
inline void apply_kronecker(const std::vector<const ToeplitzFactor*>& factors, double scale, const double* in,
                            double* out, double* work, Index c)
{
    const Index d = static_cast<Index>(factors.size());
    Index m = 1;
    for (const ToeplitzFactor* f : factors) m *= f->m();
    // passes alternate between two buffers so that the last one lands in out
    double* a = (d % 2 == 1) ? out : work;
    double* b = (d % 2 == 1) ? work : out;
    const double* src = in;
    Index stride = m;
    for (Index k = 0; k < d; ++k) {
        stride /= factors[static_cast<std::size_t>(k)]->m();  // s_k: the last dimension is fastest
        double* dst = (k % 2 == 0) ? a : b;
        apply_axis(*factors[static_cast<std::size_t>(k)], stride, m, src, dst, c, k == d - 1 ? scale : 1.0);
        src = dst;
    }
}

}  // namespace gprat::approx::kiss_gp

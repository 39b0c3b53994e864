/* PBLAS pdgemm against the same product by panel broadcasts (SUMMA) and each rank's local dgemm:
 * the measurement behind gprat.distributed's panel products (docs/distributed.md, "The block
 * products"). Standalone, no gprat: square N x N x N products on a 1 x P grid, block nb.
 *
 *   mpicc -O2 benchmarks/pdgemm_rate.c -o /tmp/pdgemm_rate -lscalapack-openmpi /usr/lib/x86_64-linux-gnu/libblas.so.3
 *   OMPI_MCA_mpi_yield_when_idle=1 OPENBLAS_NUM_THREADS=1 mpirun -n 2 --bind-to none /tmp/pdgemm_rate 8192 256
 *
 * Prints, per repeat (3): pdgemm N x N x N, two half-size pdgemm on submatrices ('N','N' and
 * 'T','N', as the recursions call it), pdtrmm, SUMMA on the same data (an MPI_Bcast of each
 * nb-wide panel of A along the grid row, one local dgemm per panel), and each rank's local dgemm.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void Cblacs_pinfo(int*, int*);
void Cblacs_get(int, int, int*);
void Cblacs_gridinit(int*, const char*, int, int);
void Cblacs_gridinfo(int, int*, int*, int*, int*);
int numroc_(const int*, const int*, const int*, const int*, const int*);
void descinit_(int*, const int*, const int*, const int*, const int*, const int*, const int*, const int*, const int*,
               int*);
void pdgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
             const int*, const int*, const double*, const int*, const int*, const int*, const double*, double*,
             const int*, const int*, const int*);
void pdtrmm_(const char*, const char*, const char*, const char*, const int*, const int*, const double*,
             const double*, const int*, const int*, const int*, double*, const int*, const int*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*);

static double rate(double flops, double seconds) { return flops / seconds / 1e9; }

int main(int argc, char** argv)
{
    MPI_Init(&argc, &argv);
    if (argc < 3) {
        fprintf(stderr, "usage: pdgemm_rate N nb\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int N = atoi(argv[1]), nb = atoi(argv[2]);
    int me, np, ctx, nprow = 1, npcol, myr, myc, zero = 0, one = 1, info;
    Cblacs_pinfo(&me, &np);
    npcol = np;
    Cblacs_get(-1, 0, &ctx);
    Cblacs_gridinit(&ctx, "Row", nprow, npcol);
    Cblacs_gridinfo(ctx, &nprow, &npcol, &myr, &myc);
    MPI_Comm row;  /* this rank's grid row (the whole 1 x P grid): SUMMA's broadcasts of A's panels */
    MPI_Comm_split(MPI_COMM_WORLD, myr, myc, &row);
    int mloc = numroc_(&N, &nb, &myr, &zero, &nprow), nloc = numroc_(&N, &nb, &myc, &zero, &npcol);
    int desc[9], lld = mloc > 1 ? mloc : 1;
    descinit_(desc, &N, &N, &nb, &nb, &zero, &zero, &ctx, &lld, &info);
    double *A = malloc(sizeof(double) * mloc * nloc), *B = malloc(sizeof(double) * mloc * nloc);
    double *C = malloc(sizeof(double) * mloc * nloc), *panel = malloc(sizeof(double) * mloc * nb);
    for (long i = 0; i < (long)mloc * nloc; i++) { A[i] = drand48(); B[i] = drand48(); C[i] = 0; }
    double a1 = 1.0, b1 = 1.0, n3 = (double)N * N * N;
    int h = N / 2, h1 = h + 1;
    for (int rep = 0; rep < 3; rep++) {
        double t[6];
        MPI_Barrier(MPI_COMM_WORLD);
        t[0] = MPI_Wtime();
        pdgemm_("N", "N", &N, &N, &N, &a1, A, &one, &one, desc, B, &one, &one, desc, &b1, C, &one, &one, desc);
        MPI_Barrier(MPI_COMM_WORLD);
        t[1] = MPI_Wtime();  /* C(h+1:, 1:h) += A(h+1:, h+1:) B(h+1:, 1:h) */
        pdgemm_("N", "N", &h, &h, &h, &a1, A, &h1, &h1, desc, B, &h1, &one, desc, &b1, C, &h1, &one, desc);
        MPI_Barrier(MPI_COMM_WORLD);
        t[2] = MPI_Wtime();  /* C(h+1:, 1:h) += A(h+1:, 1:h)^T B(h+1:, h+1:) */
        pdgemm_("T", "N", &h, &h, &h, &a1, A, &h1, &one, desc, B, &h1, &h1, desc, &b1, C, &h1, &one, desc);
        MPI_Barrier(MPI_COMM_WORLD);
        t[3] = MPI_Wtime();  /* B(:, 1:h) <- B(:, 1:h) tril(A(1:h, 1:h)) */
        pdtrmm_("R", "L", "N", "N", &N, &h, &a1, A, &one, &one, desc, B, &one, &one, desc);
        MPI_Barrier(MPI_COMM_WORLD);
        t[4] = MPI_Wtime();  /* SUMMA: C += A B, panel k of A from its owning grid column */
        for (int k = 0; k < N; k += nb) {
            int kb = N - k < nb ? N - k : nb, blk = k / nb, owner = blk % npcol;
            if (myc == owner) memcpy(panel, A + (long)(blk / npcol) * nb * mloc, sizeof(double) * mloc * kb);
            MPI_Bcast(panel, mloc * kb, MPI_DOUBLE, owner, row);
            /* B's panel rows k .. k+kb are local (one grid row) */
            dgemm_("N", "N", &mloc, &nloc, &kb, &a1, panel, &mloc, B + k, &lld, &b1, C, &lld);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t[5] = MPI_Wtime();
        double t0 = MPI_Wtime();  /* each rank alone: C_local += A_local B_local (mloc x nloc x nloc) */
        dgemm_("N", "N", &mloc, &nloc, &nloc, &a1, A, &lld, B, &lld, &b1, C, &lld);
        double tl = MPI_Wtime() - t0;
        if (me == 0)
            printf("N=%d nb=%d 1x%d: pdgemm %.3f s (%.1f GF/s) | half NN %.1f | half TN %.1f | pdtrmm %.1f | "
                   "SUMMA %.3f s (%.1f GF/s) | local dgemm %.1f GF/s per rank\n",
                   N, nb, npcol, t[1] - t[0], rate(2 * n3, t[1] - t[0]), rate(n3 / 4, t[2] - t[1]),
                   rate(n3 / 4, t[3] - t[2]), rate(n3 / 4, t[4] - t[3]), t[5] - t[4], rate(2 * n3, t[5] - t[4]),
                   rate(2.0 * mloc * nloc * (double)nloc, tl));
    }
    MPI_Finalize();
    return 0;
}

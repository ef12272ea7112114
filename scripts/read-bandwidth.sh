#!/usr/bin/env bash
# How fast this machine's cores read a buffer of a given size, as single-stream sampling reads
# its weights once per character: the median over repeated passes with 1 and 2 threads
# (OpenMP, whose threads spin between passes, so no wake-up is timed).
#
#   scripts/read-bandwidth.sh [BYTES]    (default 12,716,032: the default model's weights read
#                                         per sampled character, every layer but the bottom one's
#                                         input product, which is a table)
#
# Needs gcc with OpenMP (libgomp).
set -euo pipefail
bytes=${1:-12716032}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/read.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <omp.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t n = (size_t)atol(argv[1]) / sizeof(float);
    enum { PASSES = 500 };
    float *values = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++) values[i] = (float)(i % 7);
    static double seconds[PASSES];
    float total = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        double start = now();
        float sum = 0;
        #pragma omp parallel for reduction(+ : sum) schedule(static)
        for (size_t i = 0; i < n; i++) sum += values[i];
        seconds[pass] = now() - start;
        total += sum;
    }
    qsort(seconds, PASSES, sizeof(double), by_value);
    /* The sum is printed so that the compiler keeps the reads. */
    printf("%zu bytes, %d thread(s): median %.1f GB/s, %.3f ms a pass (checksum %g)\n",
           n * sizeof(float), omp_get_max_threads(), n * sizeof(float) / seconds[PASSES / 2] / 1e9,
           seconds[PASSES / 2] * 1e3, total);
    return 0;
}
C
gcc -O3 -march=native -ffast-math -fopenmp "$work/read.c" -o "$work/read"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for threads in 1 2 1 2; do OMP_NUM_THREADS=$threads "$work/read" "$bytes"; done

# Sourced by the scripts that run ours beside PyTorch: SIMD=avx512|avx2|portable puts our CPU
# kernels (CHAR_LSTM_SIMD) and every library PyTorch computes with on that one instruction set:
# ATen's own kernels (ATEN_CPU_CAPABILITY), MKL's products (MKL_ENABLE_INSTRUCTIONS) and
# oneDNN's, which run `nn.LSTM` on the CPU (ONEDNN_MAX_CPU_ISA; without it oneDNN takes
# AVX-512 whatever the other two say). Unset, each takes the best the CPU has.
case "${SIMD:-}" in
    "") ;;
    avx512) export CHAR_LSTM_SIMD=avx512 ATEN_CPU_CAPABILITY=avx512 \
        MKL_ENABLE_INSTRUCTIONS=AVX512 ONEDNN_MAX_CPU_ISA=AVX512_CORE ;;
    avx2) export CHAR_LSTM_SIMD=avx2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        ONEDNN_MAX_CPU_ISA=AVX2 ;;
    portable) export CHAR_LSTM_SIMD=portable ATEN_CPU_CAPABILITY=default \
        MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41 ;;
    *) echo "$0: SIMD=$SIMD: expected avx512, avx2 or portable" >&2; exit 2 ;;
esac

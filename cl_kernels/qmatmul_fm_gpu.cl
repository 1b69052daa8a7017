/* Fast-numerics quantized matrix products for GPUs (LANES 1): built only with
 * -DFAST_NUMERICS=1, after qmatmul.cl (its macros and argument struct). */
#if FAST_NUMERICS && LANES == 1 && !defined(MOECL_NO_FAST)
#endif

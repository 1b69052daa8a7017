/* Fast-numerics quantized matrix products for CPU devices (LANES 8 or 16): built only with
 * -DFAST_NUMERICS=1, after qmatmul.cl (its macros and argument struct). */
#if FAST_NUMERICS && LANES != 1 && !defined(MOECL_NO_FAST)
#endif

/* Small utility kernels: fills and copies used by the runtime and by the program-cache tests. */

__kernel void fill_f32(__global float *dst, float value, uint n) {
    uint i = get_global_id(0);
    if (i < n)
        dst[i] = value;
}

__kernel void axpy_f32(__global float *y, __global const float *x, float a, uint n) {
    uint i = get_global_id(0);
    if (i < n)
        y[i] += a * x[i];
}

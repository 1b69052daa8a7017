set terminal pngcairo size 900,560
set output 'docs/footprint_ctx.png'
set title "moecl footprint, planned bytes per device\nlike:mlx-4bit; embed=pocl:0 attn=pocl:0 experts=pocl:1 lm_head=pocl:0" noenhanced
set xlabel 'context length (tokens)'
set ylabel 'GB (10^9 bytes)'
set key left top noenhanced
set grid
set logscale x 2
plot for [i=2:7] 'docs/footprint_ctx.dat' using 1:i with linespoints title columnheader(i)
set terminal svg size 900,560 dynamic
set output 'docs/footprint_ctx.svg'
set title "moecl footprint, planned bytes per device\nlike:mlx-4bit; embed=pocl:0 attn=pocl:0 experts=pocl:1 lm_head=pocl:0" noenhanced
set xlabel 'context length (tokens)'
set ylabel 'GB (10^9 bytes)'
set key left top noenhanced
set grid
set logscale x 2
plot for [i=2:7] 'docs/footprint_ctx.dat' using 1:i with linespoints title columnheader(i)

set terminal pngcairo size 900,560
set output 'docs/footprint_recipes.png'
set title "moecl footprint, planned bytes per device\nembed=pocl:0 attn=pocl:0 experts=pocl:0 lm_head=pocl:0" noenhanced
set xlabel 'context length (tokens)'
set ylabel 'GB (10^9 bytes)'
set key left top noenhanced
set grid
set logscale x 2
plot for [i=2:9] 'docs/footprint_recipes.dat' using 1:i with linespoints title columnheader(i)
set terminal svg size 900,560 dynamic
set output 'docs/footprint_recipes.svg'
set title "moecl footprint, planned bytes per device\nembed=pocl:0 attn=pocl:0 experts=pocl:0 lm_head=pocl:0" noenhanced
set xlabel 'context length (tokens)'
set ylabel 'GB (10^9 bytes)'
set key left top noenhanced
set grid
set logscale x 2
plot for [i=2:9] 'docs/footprint_recipes.dat' using 1:i with linespoints title columnheader(i)

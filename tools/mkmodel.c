/* mkmodel: the synthetic gpt-oss checkpoint writer (placeholder entry point until the writer
 * lands; see issue on fixtures and the checkpoint writer). */
#include <stdio.h>

int main(void) {
    fprintf(stderr, "mkmodel: not implemented yet\n");
    return 1;
}

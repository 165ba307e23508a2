#include "cgweight.h"

#include <math.h>

uint64_t sh_cg_shares_to_weight(uint64_t shares)
{
        double l, w;

        if (shares == 0)
                return 0;
        if (shares <= 2)
                return 1;
        if (shares >= 262144)
                return 10000;
        /* 10^((l^2 + 125 l) / 612 - 7/34): 1 at l = 1, 100 at l = 10, 10000 at l = 18. */
        l = log2((double)shares);
        w = ceil(pow(10.0, (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0));
        return w < 1 ? 1 : w > 10000 ? 10000 : (uint64_t)w;
}

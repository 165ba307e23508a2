#include "spdy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "error.h"

#define DEFAULT_MAX_HEADER_FRAME (1u << 20)
#define DEFAULT_MAX_HEADER_BLOCK (256u << 10)
#define MAX_HEADER_BLOCK         (1u << 30) /* keeps the buffer arithmetic far from overflow */
#define CONTROL_BIT              0x80000000u
#define HEADER_LEN               8

/*
 * The SPDY/3 header-compression dictionary (draft-mbelshe-httpbis-spdy-00 section
 * 2.6.10.1), 1423 bytes, zlib dictionary id 0xe3c6a7c2. Both directions prime their zlib
 * stream with it; it must be byte exact or the peer's inflate fails with Z_DATA_ERROR.
 */
static const uint8_t spdy_dictionary[] = {
        0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x00, 0x00, 0x04,
        0x68, 0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00,
        0x03, 0x70, 0x75, 0x74, 0x00, 0x00, 0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00,
        0x00, 0x00, 0x05, 0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63,
        0x65, 0x70, 0x74, 0x00, 0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x63,
        0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70,
        0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61,
        0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00,
        0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65,
        0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c,
        0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
        0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63, 0x68, 0x65, 0x2d, 0x63,
        0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f, 0x6e, 0x6e, 0x65,
        0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
        0x74, 0x2d, 0x62, 0x61, 0x73, 0x65, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65,
        0x6e, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
        0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67,
        0x65, 0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65,
        0x6e, 0x67, 0x74, 0x68, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
        0x2d, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f,
        0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x6f,
        0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0c,
        0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00,
        0x04, 0x64, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00,
        0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x70,
        0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66, 0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00,
        0x04, 0x68, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x08, 0x69, 0x66, 0x2d, 0x6d, 0x61, 0x74,
        0x63, 0x68, 0x00, 0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69,
        0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d, 0x69, 0x66, 0x2d,
        0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, 0x08, 0x69,
        0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d, 0x75,
        0x6e, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
        0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69,
        0x65, 0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00,
        0x00, 0x00, 0x0c, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73,
        0x00, 0x00, 0x00, 0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70,
        0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61,
        0x74, 0x65, 0x00, 0x00, 0x00, 0x13, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74,
        0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72,
        0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72,
        0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72, 0x79, 0x2d, 0x61, 0x66, 0x74, 0x65, 0x72,
        0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65, 0x72, 0x00, 0x00, 0x00, 0x02, 0x74,
        0x65, 0x00, 0x00, 0x00, 0x07, 0x74, 0x72, 0x61, 0x69, 0x6c, 0x65, 0x72, 0x00, 0x00, 0x00,
        0x11, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64,
        0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61, 0x64, 0x65, 0x00,
        0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74, 0x00, 0x00,
        0x00, 0x04, 0x76, 0x61, 0x72, 0x79, 0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00, 0x00,
        0x00, 0x07, 0x77, 0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
        0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00,
        0x00, 0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x00, 0x00, 0x00, 0x03, 0x67, 0x65,
        0x74, 0x00, 0x00, 0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06,
        0x32, 0x30, 0x30, 0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69,
        0x6f, 0x6e, 0x00, 0x00, 0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x00,
        0x00, 0x00, 0x03, 0x75, 0x72, 0x6c, 0x00, 0x00, 0x00, 0x06, 0x70, 0x75, 0x62, 0x6c, 0x69,
        0x63, 0x00, 0x00, 0x00, 0x0a, 0x73, 0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65,
        0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x65, 0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00,
        0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69, 0x6e, 0x31, 0x30, 0x30, 0x31, 0x30, 0x31,
        0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35, 0x32, 0x30, 0x36, 0x33, 0x30, 0x30,
        0x33, 0x30, 0x32, 0x33, 0x30, 0x33, 0x33, 0x30, 0x34, 0x33, 0x30, 0x35, 0x33, 0x30, 0x36,
        0x33, 0x30, 0x37, 0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30, 0x36, 0x34, 0x30, 0x37,
        0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31, 0x34, 0x31, 0x32,
        0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35, 0x34, 0x31, 0x36, 0x34, 0x31, 0x37,
        0x35, 0x30, 0x32, 0x35, 0x30, 0x34, 0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e, 0x6f,
        0x6e, 0x2d, 0x41, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
        0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x32, 0x30, 0x34,
        0x20, 0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x33, 0x30, 0x31, 0x20,
        0x4d, 0x6f, 0x76, 0x65, 0x64, 0x20, 0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74,
        0x6c, 0x79, 0x34, 0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65,
        0x73, 0x74, 0x34, 0x30, 0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69,
        0x7a, 0x65, 0x64, 0x34, 0x30, 0x33, 0x20, 0x46, 0x6f, 0x72, 0x62, 0x69, 0x64, 0x64, 0x65,
        0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e, 0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35,
        0x30, 0x30, 0x20, 0x49, 0x6e, 0x74, 0x65, 0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72,
        0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f, 0x72, 0x35, 0x30, 0x31, 0x20, 0x4e, 0x6f,
        0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65, 0x6e, 0x74, 0x65, 0x64, 0x35, 0x30,
        0x33, 0x20, 0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x20, 0x55, 0x6e, 0x61, 0x76, 0x61,
        0x69, 0x6c, 0x61, 0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46, 0x65, 0x62, 0x20, 0x4d,
        0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a, 0x75, 0x6e, 0x20,
        0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53, 0x65, 0x70, 0x74, 0x20, 0x4f, 0x63,
        0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30, 0x30,
        0x3a, 0x30, 0x30, 0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
        0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69, 0x2c, 0x20, 0x53,
        0x61, 0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20, 0x47, 0x4d, 0x54, 0x63, 0x68, 0x75,
        0x6e, 0x6b, 0x65, 0x64, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c,
        0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65,
        0x2f, 0x6a, 0x70, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67, 0x69, 0x66, 0x2c,
        0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c,
        0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68,
        0x74, 0x6d, 0x6c, 0x2b, 0x78, 0x6d, 0x6c, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c,
        0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x6a, 0x61, 0x76, 0x61, 0x73, 0x63,
        0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x70, 0x72, 0x69, 0x76,
        0x61, 0x74, 0x65, 0x6d, 0x61, 0x78, 0x2d, 0x61, 0x67, 0x65, 0x3d, 0x67, 0x7a, 0x69, 0x70,
        0x2c, 0x64, 0x65, 0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64, 0x63, 0x68, 0x63, 0x68,
        0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63, 0x68, 0x61, 0x72,
        0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38, 0x38, 0x35, 0x39, 0x2d, 0x31, 0x2c,
        0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a, 0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
};

/* ---- byte order ---- */

static uint32_t get32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

/* ---- buffers ---- */

/*
 * Returns @p resized to hold at least @need elements of @elem bytes (doubling), updating
 * *@cap, or NULL on overflow or ENOMEM with @p untouched and still the caller's.
 */
static void *resize(void *p, size_t *cap, size_t need, size_t elem)
{
        size_t ncap;

        if (need == 0)
                need = 1;
        if (p && need <= *cap)
                return p;
        ncap = *cap ? *cap : 256;
        while (ncap < need) {
                if (ncap > SIZE_MAX / 2)
                        return NULL;
                ncap *= 2;
        }
        if (ncap > SIZE_MAX / elem)
                return NULL;
        p = realloc(p, ncap * elem);
        if (p)
                *cap = ncap;
        return p;
}

static int buf_reserve(struct spdy_buf *b, size_t extra)
{
        uint8_t *p;

        if (extra > SIZE_MAX - b->len)
                return -ENOMEM;
        p = resize(b->data, &b->cap, b->len + extra, 1);
        if (!p)
                return -ENOMEM;
        b->data = p;
        return 0;
}

int spdy_buf_append(struct spdy_buf *b, const void *data, size_t n)
{
        int r;

        if (n == 0)
                return 0;
        r = buf_reserve(b, n);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, data, n);
        b->len += n;
        return 0;
}

void spdy_buf_consume(struct spdy_buf *b, size_t n)
{
        if (n >= b->len) {
                b->len = 0;
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
}

void spdy_buf_done(struct spdy_buf *b)
{
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

/* ---- session ---- */

int spdy_session_init(struct spdy_session *s, const struct spdy_limits *limits,
                      struct sh_error *err)
{
        int zr;

        memset(s, 0, sizeof(*s));
        if (limits)
                s->limits = *limits;
        if (!s->limits.max_data_frame || s->limits.max_data_frame > SPDY_MAX_LENGTH)
                s->limits.max_data_frame = SPDY_MAX_LENGTH;
        if (!s->limits.max_header_frame)
                s->limits.max_header_frame = DEFAULT_MAX_HEADER_FRAME;
        if (s->limits.max_header_frame > SPDY_MAX_LENGTH)
                s->limits.max_header_frame = SPDY_MAX_LENGTH;
        if (!s->limits.max_header_block)
                s->limits.max_header_block = DEFAULT_MAX_HEADER_BLOCK;
        if (s->limits.max_header_block > MAX_HEADER_BLOCK)
                s->limits.max_header_block = MAX_HEADER_BLOCK;

        s->rx = calloc(1, sizeof(*s->rx));
        s->tx = calloc(1, sizeof(*s->tx));
        if (!s->rx || !s->tx)
                goto nomem;
        /* One stream per direction for the whole session: SPDY header blocks are slices of
         * a single zlib stream, each ending on a sync flush. */
        if (inflateInit(s->rx) != Z_OK) {
                free(s->rx);
                s->rx = NULL;
                goto nomem;
        }
        zr = deflateInit2(s->tx, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY);
        if (zr != Z_OK) {
                free(s->tx);
                s->tx = NULL;
                goto nomem;
        }
        zr = deflateSetDictionary(s->tx, spdy_dictionary, sizeof(spdy_dictionary));
        if (zr != Z_OK) {
                spdy_session_done(s);
                return sh_err(err, -EPROTO, "spdy: deflateSetDictionary: zlib error %d", zr);
        }
        return 0;
nomem:
        spdy_session_done(s);
        return sh_err(err, -ENOMEM, "spdy: zlib stream setup: out of memory");
}

void spdy_session_done(struct spdy_session *s)
{
        if (s->rx) {
                inflateEnd(s->rx);
                free(s->rx);
        }
        if (s->tx) {
                deflateEnd(s->tx);
                free(s->tx);
        }
        free(s->block);
        free(s->hdrs);
        free(s->sorted);
        free(s->settings);
        free(s->nv);
        memset(s, 0, sizeof(*s));
}

const char *spdy_frame_type_name(enum spdy_frame_type t)
{
        switch (t) {
        case SPDY_DATA:
                return "DATA";
        case SPDY_SYN_STREAM:
                return "SYN_STREAM";
        case SPDY_SYN_REPLY:
                return "SYN_REPLY";
        case SPDY_RST_STREAM:
                return "RST_STREAM";
        case SPDY_SETTINGS:
                return "SETTINGS";
        case SPDY_PING:
                return "PING";
        case SPDY_GOAWAY:
                return "GOAWAY";
        case SPDY_HEADERS:
                return "HEADERS";
        case SPDY_WINDOW_UPDATE:
                return "WINDOW_UPDATE";
        }
        return "UNKNOWN";
}

const struct spdy_header *spdy_frame_header(const struct spdy_frame *f, const char *name)
{
        size_t len = strlen(name);

        for (size_t i = 0; i < f->n_headers; i++)
                if (f->headers[i].name_len == len && memcmp(f->headers[i].name, name, len) == 0)
                        return &f->headers[i];
        return NULL;
}

/* ---- decoding ---- */

/*
 * Inflates one frame's compressed header block into s->block. Any failure here leaves the
 * shared zlib stream out of step with the peer, so the caller treats it as fatal.
 */
static int inflate_block(struct spdy_session *s, const uint8_t *in, size_t in_len, size_t *ret_len,
                         struct sh_error *err)
{
        /* Room for one byte past the limit tells "exactly at the limit" from "over it"; one
         * more holds the NUL after the last value. */
        size_t hard = s->limits.max_header_block + 2, out = 0;
        z_stream *z = s->rx;

        z->next_in = (Bytef *)(uintptr_t)in;
        z->avail_in = (uInt)in_len;
        for (;;) {
                size_t room;
                int zr;

                if (s->block_cap < 2 || out + 1 >= s->block_cap) {
                        size_t want = s->block_cap < 2048 ? 4096 : s->block_cap * 2;
                        uint8_t *p;

                        if (want > hard)
                                want = hard;
                        p = resize(s->block, &s->block_cap, want, 1);
                        if (!p)
                                return sh_err(err, -ENOMEM, "spdy: header block: out of memory");
                        s->block = p;
                }
                room = s->block_cap - 1 - out; /* keep the byte for the last NUL spare */
                if (room > UINT32_MAX)
                        room = UINT32_MAX;
                z->next_out = s->block + out;
                z->avail_out = (uInt)room;
                zr = inflate(z, Z_SYNC_FLUSH);
                out += room - z->avail_out;
                if (out > s->limits.max_header_block)
                        return sh_err(err, -EMSGSIZE, "spdy: header block inflates past %zu bytes",
                                      s->limits.max_header_block);
                if (zr == Z_NEED_DICT) {
                        zr = inflateSetDictionary(z, spdy_dictionary, sizeof(spdy_dictionary));
                        if (zr != Z_OK)
                                return sh_err(err, -EPROTO,
                                              "spdy: header block wants an unknown dictionary");
                        continue;
                }
                if (zr == Z_STREAM_END)
                        return sh_err(err, -EPROTO, "spdy: peer ended its header zlib stream");
                if (zr != Z_OK && zr != Z_BUF_ERROR)
                        return sh_err(err, -EPROTO, "spdy: corrupt header block (zlib %d%s%s)", zr,
                                      z->msg ? ": " : "", z->msg ? z->msg : "");
                if (z->avail_out > 0) {
                        /* Room was left, so zlib has produced all it can from this input. */
                        if (z->avail_in == 0)
                                break;
                        if (zr == Z_BUF_ERROR)
                                return sh_err(err, -EPROTO, "spdy: header block: zlib stalled");
                }
        }
        if (z->avail_in != 0)
                return sh_err(err, -EPROTO, "spdy: header block has trailing zlib input");
        *ret_len = out;
        return 0;
}

static int cmp_header_name(const void *a, const void *b)
{
        const struct spdy_header *x = *(const struct spdy_header *const *)a;
        const struct spdy_header *y = *(const struct spdy_header *const *)b;
        size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
        int c = memcmp(x->name, y->name, n);

        if (c)
                return c;
        return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Empty, or NUL-separated parts that are each non-empty (spec 2.6.10). */
static bool value_ok(const uint8_t *v, size_t len)
{
        if (len == 0)
                return true;
        if (v[0] == 0 || v[len - 1] == 0)
                return false;
        for (size_t i = 1; i < len; i++)
                if (v[i] == 0 && v[i - 1] == 0)
                        return false;
        return true;
}

/*
 * Splits the inflated block s->block[0..len) into s->hdrs. Errors here are stream
 * errors (-EBADMSG): the zlib stream is intact.
 */
static int parse_nv(struct spdy_session *s, size_t len, size_t *ret_n, struct sh_error *err)
{
        const uint8_t *p = s->block;
        size_t off = 4, count;

        if (len < 4)
                return sh_err(err, -EBADMSG, "spdy: header block of %zu bytes has no count", len);
        count = get32(p);
        /* Each pair takes at least 4 + 1 + 4 bytes, which bounds the allocation. */
        if (count > (len - 4) / 9)
                return sh_err(err, -EBADMSG, "spdy: header count %zu exceeds the %zu-byte block",
                              count, len);
        if (count > s->hdrs_cap) {
                struct spdy_header *h = realloc(s->hdrs, count * sizeof(*h));

                if (!h)
                        return sh_err(err, -ENOMEM, "spdy: headers: out of memory");
                s->hdrs = h;
                const struct spdy_header **so = realloc(s->sorted, count * sizeof(*so));

                if (!so)
                        return sh_err(err, -ENOMEM, "spdy: headers: out of memory");
                s->sorted = so;
                s->hdrs_cap = count;
        }
        for (size_t i = 0; i < count; i++) {
                size_t nlen, vlen;

                if (len - off < 4)
                        return sh_err(err, -EBADMSG, "spdy: header %zu: truncated name length", i);
                nlen = get32(p + off);
                off += 4;
                if (nlen == 0)
                        return sh_err(err, -EBADMSG, "spdy: header %zu: empty name", i);
                if (nlen > len - off)
                        return sh_err(err, -EBADMSG, "spdy: header %zu: name length %zu overruns",
                                      i, nlen);
                for (size_t j = 0; j < nlen; j++) {
                        uint8_t c = p[off + j];

                        if (c == 0 || (c >= 'A' && c <= 'Z'))
                                return sh_err(err, -EBADMSG,
                                              "spdy: header %zu: name not lowercase ASCII", i);
                }
                s->hdrs[i].name = (const char *)p + off;
                s->hdrs[i].name_len = nlen;
                off += nlen;
                if (len - off < 4)
                        return sh_err(err, -EBADMSG, "spdy: header %zu: truncated value length", i);
                vlen = get32(p + off);
                off += 4;
                if (vlen > len - off)
                        return sh_err(err, -EBADMSG, "spdy: header %zu: value length %zu overruns",
                                      i, vlen);
                if (!value_ok(p + off, vlen))
                        return sh_err(err, -EBADMSG, "spdy: header %zu: empty value part", i);
                s->hdrs[i].value = (const char *)p + off;
                s->hdrs[i].value_len = vlen;
                off += vlen;
        }
        if (off != len)
                return sh_err(err, -EBADMSG, "spdy: %zu stray bytes after the headers", len - off);

        for (size_t i = 0; i < count; i++)
                s->sorted[i] = &s->hdrs[i];
        if (count > 1)
                qsort(s->sorted, count, sizeof(*s->sorted), cmp_header_name);
        for (size_t i = 1; i < count; i++)
                if (cmp_header_name(&s->sorted[i - 1], &s->sorted[i]) == 0)
                        return sh_err(
                                err, -EBADMSG, "spdy: duplicate header '%.*s'",
                                (int)(s->sorted[i]->name_len > 64 ? 64 : s->sorted[i]->name_len),
                                s->sorted[i]->name);

        /* Every length has been read, so the bytes after each string (the next length
         * field, or the spare byte at the end) can become its terminator. */
        for (size_t i = 0; i < count; i++) {
                ((uint8_t *)s->hdrs[i].name)[s->hdrs[i].name_len] = 0;
                ((uint8_t *)s->hdrs[i].value)[s->hdrs[i].value_len] = 0;
        }
        *ret_n = count;
        return 0;
}

/* Inflates and splits the header block of a frame already known to be complete. */
static int decode_headers(struct spdy_session *s, const uint8_t *in, size_t in_len,
                          struct spdy_frame *f, struct sh_error *err)
{
        size_t len = 0, n = 0;
        int r;

        r = inflate_block(s, in, in_len, &len, err);
        if (r < 0)
                return r;
        if (f->stream_id == 0)
                return sh_err(err, -EPROTO, "spdy: %s on stream 0", spdy_frame_type_name(f->type));
        r = parse_nv(s, len, &n, err);
        if (r < 0)
                return r;
        f->headers = s->hdrs;
        f->n_headers = n;
        return 0;
}

static int parse_control(struct spdy_session *s, uint16_t type, uint8_t flags, const uint8_t *p,
                         size_t n, struct spdy_frame *f, struct sh_error *err)
{
        f->type = (enum spdy_frame_type)type;
        f->flags = flags;
        switch (type) {
        case SPDY_SYN_STREAM:
                if (n < 10)
                        return sh_err(err, -EPROTO, "spdy: SYN_STREAM of %zu bytes", n);
                f->stream_id = get32(p) & SPDY_STREAM_MAX;
                f->assoc_id = get32(p + 4) & SPDY_STREAM_MAX;
                f->priority = p[8] >> 5;
                f->slot = p[9];
                return decode_headers(s, p + 10, n - 10, f, err);
        case SPDY_SYN_REPLY:
        case SPDY_HEADERS:
                if (n < 4)
                        return sh_err(err, -EPROTO, "spdy: %s of %zu bytes",
                                      spdy_frame_type_name(f->type), n);
                f->stream_id = get32(p) & SPDY_STREAM_MAX;
                return decode_headers(s, p + 4, n - 4, f, err);
        case SPDY_RST_STREAM:
                if (n != 8)
                        return sh_err(err, -EPROTO, "spdy: RST_STREAM of %zu bytes", n);
                f->stream_id = get32(p) & SPDY_STREAM_MAX;
                f->status = get32(p + 4);
                if (f->stream_id == 0)
                        return sh_err(err, -EPROTO, "spdy: RST_STREAM on stream 0");
                return 0;
        case SPDY_SETTINGS: {
                struct spdy_setting *set;
                size_t count;

                if (n < 4 || (n - 4) % 8 != 0 || get32(p) != (n - 4) / 8)
                        return sh_err(err, -EPROTO, "spdy: SETTINGS of %zu bytes, count %u", n,
                                      n >= 4 ? get32(p) : 0);
                count = (n - 4) / 8;
                set = resize(s->settings, &s->settings_cap, count, sizeof(*set));
                if (!set)
                        return sh_err(err, -ENOMEM, "spdy: SETTINGS: out of memory");
                s->settings = set;
                for (size_t i = 0; i < count; i++) {
                        const uint8_t *e = p + 4 + 8 * i;

                        s->settings[i].flags = e[0];
                        s->settings[i].id = get32(e) & 0xffffff;
                        s->settings[i].value = get32(e + 4);
                }
                f->settings = s->settings;
                f->n_settings = count;
                return 0;
        }
        case SPDY_PING:
                if (n != 4)
                        return sh_err(err, -EPROTO, "spdy: PING of %zu bytes", n);
                f->ping_id = get32(p);
                return 0;
        case SPDY_GOAWAY:
                if (n != 8)
                        return sh_err(err, -EPROTO, "spdy: GOAWAY of %zu bytes", n);
                f->last_good_id = get32(p) & SPDY_STREAM_MAX;
                f->status = get32(p + 4);
                return 0;
        case SPDY_WINDOW_UPDATE:
                if (n != 8)
                        return sh_err(err, -EPROTO, "spdy: WINDOW_UPDATE of %zu bytes", n);
                f->stream_id = get32(p) & SPDY_STREAM_MAX;
                f->delta = get32(p + 4) & SPDY_STREAM_MAX;
                return 0;
        default:
                return sh_err(err, -EPROTO, "spdy: control frame type %u", type);
        }
}

static bool known_control(uint16_t type)
{
        switch (type) {
        case SPDY_SYN_STREAM:
        case SPDY_SYN_REPLY:
        case SPDY_RST_STREAM:
        case SPDY_SETTINGS:
        case SPDY_PING:
        case SPDY_GOAWAY:
        case SPDY_HEADERS:
        case SPDY_WINDOW_UPDATE:
                return true;
        default:
                return false;
        }
}

static int fatal(struct spdy_session *s, int r)
{
        if (r != -EAGAIN && r != -EBADMSG)
                s->rx_broken = true;
        return r;
}

int spdy_parse(struct spdy_session *s, const uint8_t *buf, size_t len, size_t *consumed,
               struct spdy_frame *out, struct sh_error *err)
{
        size_t off = 0;

        *consumed = 0;
        if (s->rx_broken || !s->rx)
                return sh_err(err, -EPROTO, "spdy: session unusable after an earlier error");
        for (;;) {
                struct spdy_frame f = {0};
                const uint8_t *p;
                uint32_t w0, w1;
                size_t flen;
                uint8_t flags;
                int r;

                if (s->skip > 0) {
                        size_t n = s->skip < len - off ? s->skip : len - off;

                        off += n;
                        s->skip -= n;
                        *consumed = off;
                        if (s->skip > 0)
                                return -EAGAIN;
                }
                if (len - off < HEADER_LEN)
                        return -EAGAIN;
                p = buf + off;
                w0 = get32(p);
                w1 = get32(p + 4);
                flags = (uint8_t)(w1 >> 24);
                flen = w1 & SPDY_MAX_LENGTH;

                if (!(w0 & CONTROL_BIT)) {
                        f.type = SPDY_DATA;
                        f.flags = flags;
                        f.stream_id = w0 & SPDY_STREAM_MAX;
                        if (f.stream_id == 0)
                                return fatal(s, sh_err(err, -EPROTO, "spdy: DATA on stream 0"));
                        if (flen > s->limits.max_data_frame)
                                return fatal(s, sh_err(err, -EMSGSIZE,
                                                       "spdy: DATA frame of %zu bytes (max %zu)",
                                                       flen, s->limits.max_data_frame));
                        if (len - off - HEADER_LEN < flen)
                                return -EAGAIN;
                        f.data = p + HEADER_LEN;
                        f.data_len = flen;
                        *out = f;
                        *consumed = off + HEADER_LEN + flen;
                        return 0;
                }

                uint16_t version = (uint16_t)((w0 >> 16) & 0x7fff);
                uint16_t type = (uint16_t)(w0 & 0xffff);

                if (version != SPDY_VERSION)
                        return fatal(s, sh_err(err, -EPROTO, "spdy: version %u, want %d", version,
                                               SPDY_VERSION));
                if (!known_control(type)) {
                        /* Spec 2.2.1: unknown control frames are ignored. They are skipped
                         * without buffering, so their length needs no limit. */
                        off += HEADER_LEN;
                        s->skip = flen;
                        *consumed = off;
                        continue;
                }
                if (flen > s->limits.max_header_frame)
                        return fatal(s,
                                     sh_err(err, -EMSGSIZE, "spdy: %s frame of %zu bytes (max %zu)",
                                            spdy_frame_type_name((enum spdy_frame_type)type), flen,
                                            s->limits.max_header_frame));
                if (len - off - HEADER_LEN < flen)
                        return -EAGAIN;
                r = parse_control(s, type, flags, p + HEADER_LEN, flen, &f, err);
                if (r == -EBADMSG) {
                        memset(out, 0, sizeof(*out));
                        out->type = f.type;
                        out->stream_id = f.stream_id;
                }
                if (r == 0 || r == -EBADMSG) {
                        if (r == 0)
                                *out = f;
                        *consumed = off + HEADER_LEN + flen;
                        return r;
                }
                return fatal(s, r);
        }
}

/* ---- encoding ---- */

static void put_control(uint8_t *p, uint16_t type, uint8_t flags, size_t len)
{
        put32(p, CONTROL_BIT | (uint32_t)SPDY_VERSION << 16 | type);
        put32(p + 4, (uint32_t)flags << 24 | (uint32_t)len);
}

static bool stream_id_ok(uint32_t id)
{
        return id != 0 && id <= SPDY_STREAM_MAX;
}

static int fixed_frame(struct spdy_buf *b, uint16_t type, uint8_t flags, const uint32_t *words,
                       size_t n, struct sh_error *err)
{
        uint8_t *p;

        if (buf_reserve(b, HEADER_LEN + 4 * n) < 0)
                return sh_err(err, -ENOMEM, "spdy: %s: out of memory",
                              spdy_frame_type_name((enum spdy_frame_type)type));
        p = b->data + b->len;
        put_control(p, type, flags, 4 * n);
        for (size_t i = 0; i < n; i++)
                put32(p + HEADER_LEN + 4 * i, words[i]);
        b->len += HEADER_LEN + 4 * n;
        return 0;
}

static bool name_eq_lower(const char *a, size_t alen, const char *b, size_t blen)
{
        if (alen != blen)
                return false;
        for (size_t i = 0; i < alen; i++) {
                char x = a[i], y = b[i];

                if (x >= 'A' && x <= 'Z')
                        x = (char)(x - 'A' + 'a');
                if (y >= 'A' && y <= 'Z')
                        y = (char)(y - 'A' + 'a');
                if (x != y)
                        return false;
        }
        return true;
}

static size_t hdr_name_len(const struct spdy_header *h)
{
        return h->name_len ? h->name_len : strlen(h->name);
}

static size_t hdr_value_len(const struct spdy_header *h)
{
        if (!h->value)
                return 0;
        return h->value_len ? h->value_len : strlen(h->value);
}

/* Builds the uncompressed name/value block in s->nv; returns its length in *ret_len. */
static int build_nv(struct spdy_session *s, const struct spdy_header *h, size_t n, size_t *ret_len,
                    struct sh_error *err)
{
        size_t total = 4, off;
        uint8_t *nv;

        if (n > UINT32_MAX)
                return sh_err(err, -EINVAL, "spdy: %zu headers", n);
        for (size_t i = 0; i < n; i++) {
                size_t nl, vl;

                if (!h[i].name)
                        return sh_err(err, -EINVAL, "spdy: header %zu has no name", i);
                nl = hdr_name_len(&h[i]);
                vl = hdr_value_len(&h[i]);
                if (nl == 0 || memchr(h[i].name, 0, nl))
                        return sh_err(err, -EINVAL, "spdy: header %zu: empty or NUL-holding name",
                                      i);
                if (!value_ok((const uint8_t *)h[i].value, vl))
                        return sh_err(err, -EINVAL, "spdy: header '%.*s': empty value part",
                                      (int)(nl > 64 ? 64 : nl), h[i].name);
                for (size_t j = 0; j < i; j++)
                        if (name_eq_lower(h[i].name, nl, h[j].name, hdr_name_len(&h[j])))
                                return sh_err(err, -EINVAL, "spdy: duplicate header '%.*s'",
                                              (int)(nl > 64 ? 64 : nl), h[i].name);
                if (nl > SPDY_MAX_LENGTH || vl > SPDY_MAX_LENGTH ||
                    total > SPDY_MAX_LENGTH - 8 - nl - vl)
                        return sh_err(err, -EMSGSIZE, "spdy: header block too large");
                total += 8 + nl + vl;
        }
        nv = resize(s->nv, &s->nv_cap, total, 1);
        if (!nv)
                return sh_err(err, -ENOMEM, "spdy: header block: out of memory");
        s->nv = nv;
        put32(s->nv, (uint32_t)n);
        off = 4;
        for (size_t i = 0; i < n; i++) {
                size_t nl = hdr_name_len(&h[i]), vl = hdr_value_len(&h[i]);

                put32(s->nv + off, (uint32_t)nl);
                off += 4;
                for (size_t j = 0; j < nl; j++) {
                        char c = h[i].name[j];

                        s->nv[off + j] = (uint8_t)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
                }
                off += nl;
                put32(s->nv + off, (uint32_t)vl);
                off += 4;
                if (vl)
                        memcpy(s->nv + off, h[i].value, vl);
                off += vl;
        }
        *ret_len = off;
        return 0;
}

static int header_frame(struct spdy_session *s, struct spdy_buf *b, uint16_t type, uint8_t flags,
                        const uint8_t *fixed, size_t fixed_len, const struct spdy_header *h,
                        size_t n, struct sh_error *err)
{
        const char *name = spdy_frame_type_name((enum spdy_frame_type)type);
        size_t start = b->len, nv_len = 0, bound, clen;
        z_stream *z = s->tx;
        int r, zr;

        if (s->tx_broken || !z)
                return sh_err(err, -EPROTO, "spdy: %s: header compressor out of sync", name);
        r = build_nv(s, h, n, &nv_len, err);
        if (r < 0)
                return r;
        /* deflateBound() covers a whole stream; the sync-flush marker and the dictionary id
         * are within the slack. Reserving it all up front means zlib never runs out of
         * room, so a failed allocation cannot leave the compressor ahead of the peer. */
        bound = deflateBound(z, (uLong)nv_len) + 64;
        if (bound + fixed_len > SPDY_MAX_LENGTH)
                return sh_err(err, -EMSGSIZE, "spdy: %s: header block of %zu bytes too large", name,
                              nv_len);
        if (buf_reserve(b, HEADER_LEN + fixed_len + bound) < 0)
                return sh_err(err, -ENOMEM, "spdy: %s: out of memory", name);
        b->len += HEADER_LEN;
        memcpy(b->data + b->len, fixed, fixed_len);
        b->len += fixed_len;

        z->next_in = s->nv;
        z->avail_in = (uInt)nv_len;
        for (;;) {
                size_t room = b->cap - b->len;

                if (room > UINT32_MAX)
                        room = UINT32_MAX;
                z->next_out = b->data + b->len;
                z->avail_out = (uInt)room;
                zr = deflate(z, Z_SYNC_FLUSH);
                b->len += room - z->avail_out;
                if (zr != Z_OK && zr != Z_BUF_ERROR) {
                        s->tx_broken = true;
                        b->len = start;
                        return sh_err(err, -EPROTO, "spdy: %s: deflate: zlib error %d", name, zr);
                }
                if (z->avail_out > 0)
                        break;
                /* Not reached with the bound above; kept so a zlib surprise is handled. */
                if (buf_reserve(b, 256) < 0) {
                        s->tx_broken = true;
                        b->len = start;
                        return sh_err(err, -ENOMEM, "spdy: %s: out of memory", name);
                }
        }
        clen = b->len - start - HEADER_LEN;
        if (z->avail_in != 0 || clen > SPDY_MAX_LENGTH) {
                s->tx_broken = true;
                b->len = start;
                return sh_err(err, -EPROTO, "spdy: %s: compressor did not drain", name);
        }
        put_control(b->data + start, type, flags, clen);
        return 0;
}

int spdy_encode_syn_stream(struct spdy_session *s, struct spdy_buf *b, uint32_t stream_id,
                           uint32_t assoc_id, uint8_t priority, uint8_t flags,
                           const struct spdy_header *h, size_t n, struct sh_error *err)
{
        uint8_t fixed[10];

        if (!stream_id_ok(stream_id) || assoc_id > SPDY_STREAM_MAX || priority > 7)
                return sh_err(err, -EINVAL, "spdy: SYN_STREAM id %u assoc %u priority %u",
                              stream_id, assoc_id, priority);
        put32(fixed, stream_id);
        put32(fixed + 4, assoc_id);
        fixed[8] = (uint8_t)(priority << 5);
        fixed[9] = 0;
        return header_frame(s, b, SPDY_SYN_STREAM, flags, fixed, sizeof(fixed), h, n, err);
}

int spdy_encode_syn_reply(struct spdy_session *s, struct spdy_buf *b, uint32_t stream_id,
                          uint8_t flags, const struct spdy_header *h, size_t n,
                          struct sh_error *err)
{
        uint8_t fixed[4];

        if (!stream_id_ok(stream_id))
                return sh_err(err, -EINVAL, "spdy: SYN_REPLY stream id %u", stream_id);
        put32(fixed, stream_id);
        return header_frame(s, b, SPDY_SYN_REPLY, flags, fixed, sizeof(fixed), h, n, err);
}

int spdy_encode_headers(struct spdy_session *s, struct spdy_buf *b, uint32_t stream_id,
                        uint8_t flags, const struct spdy_header *h, size_t n, struct sh_error *err)
{
        uint8_t fixed[4];

        if (!stream_id_ok(stream_id))
                return sh_err(err, -EINVAL, "spdy: HEADERS stream id %u", stream_id);
        put32(fixed, stream_id);
        return header_frame(s, b, SPDY_HEADERS, flags, fixed, sizeof(fixed), h, n, err);
}

int spdy_encode_data(struct spdy_buf *b, uint32_t stream_id, uint8_t flags, const void *data,
                     size_t len, struct sh_error *err)
{
        uint8_t *p;

        if (!stream_id_ok(stream_id))
                return sh_err(err, -EINVAL, "spdy: DATA stream id %u", stream_id);
        if (len > SPDY_MAX_LENGTH)
                return sh_err(err, -EMSGSIZE, "spdy: DATA of %zu bytes", len);
        if (buf_reserve(b, HEADER_LEN + len) < 0)
                return sh_err(err, -ENOMEM, "spdy: DATA: out of memory");
        p = b->data + b->len;
        put32(p, stream_id);
        put32(p + 4, (uint32_t)flags << 24 | (uint32_t)len);
        if (len)
                memcpy(p + HEADER_LEN, data, len);
        b->len += HEADER_LEN + len;
        return 0;
}

int spdy_encode_rst_stream(struct spdy_buf *b, uint32_t stream_id, uint32_t status,
                           struct sh_error *err)
{
        uint32_t w[2] = {stream_id, status};

        if (!stream_id_ok(stream_id) || status == 0)
                return sh_err(err, -EINVAL, "spdy: RST_STREAM stream id %u status %u", stream_id,
                              status);
        return fixed_frame(b, SPDY_RST_STREAM, 0, w, 2, err);
}

int spdy_encode_settings(struct spdy_buf *b, uint8_t flags, const struct spdy_setting *v, size_t n,
                         struct sh_error *err)
{
        uint8_t *p;

        if (n > (SPDY_MAX_LENGTH - 4) / 8)
                return sh_err(err, -EMSGSIZE, "spdy: SETTINGS with %zu entries", n);
        for (size_t i = 0; i < n; i++)
                if (v[i].id > 0xffffff)
                        return sh_err(err, -EINVAL, "spdy: SETTINGS id %u", v[i].id);
        if (buf_reserve(b, HEADER_LEN + 4 + 8 * n) < 0)
                return sh_err(err, -ENOMEM, "spdy: SETTINGS: out of memory");
        p = b->data + b->len;
        put_control(p, SPDY_SETTINGS, flags, 4 + 8 * n);
        put32(p + HEADER_LEN, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
                uint8_t *e = p + HEADER_LEN + 4 + 8 * i;

                put32(e, (uint32_t)v[i].flags << 24 | v[i].id);
                put32(e + 4, v[i].value);
        }
        b->len += HEADER_LEN + 4 + 8 * n;
        return 0;
}

int spdy_encode_ping(struct spdy_buf *b, uint32_t id, struct sh_error *err)
{
        return fixed_frame(b, SPDY_PING, 0, &id, 1, err);
}

int spdy_encode_goaway(struct spdy_buf *b, uint32_t last_good_id, uint32_t status,
                       struct sh_error *err)
{
        uint32_t w[2] = {last_good_id, status};

        if (last_good_id > SPDY_STREAM_MAX)
                return sh_err(err, -EINVAL, "spdy: GOAWAY last good stream id %u", last_good_id);
        return fixed_frame(b, SPDY_GOAWAY, 0, w, 2, err);
}

int spdy_encode_window_update(struct spdy_buf *b, uint32_t stream_id, uint32_t delta,
                              struct sh_error *err)
{
        uint32_t w[2] = {stream_id, delta};

        if (stream_id > SPDY_STREAM_MAX || delta == 0 || delta > SPDY_WINDOW_MAX)
                return sh_err(err, -EINVAL, "spdy: WINDOW_UPDATE stream id %u delta %u", stream_id,
                              delta);
        return fixed_frame(b, SPDY_WINDOW_UPDATE, 0, w, 2, err);
}

/* ---- flow control ---- */

void spdy_window_init(struct spdy_window *w, uint32_t initial)
{
        if (initial > SPDY_WINDOW_MAX)
                initial = SPDY_WINDOW_MAX;
        w->size = initial;
        w->initial = initial;
        w->pending = 0;
}

int64_t spdy_window_avail(const struct spdy_window *w)
{
        return w->size;
}

int spdy_window_consume(struct spdy_window *w, uint32_t n, struct sh_error *err)
{
        if ((int64_t)n > w->size)
                return sh_err(err, -ENOSPC, "spdy: %u bytes exceed the flow-control window of %lld",
                              n, (long long)w->size);
        w->size -= n;
        return 0;
}

int spdy_window_grow(struct spdy_window *w, uint32_t delta, struct sh_error *err)
{
        if (delta == 0 || delta > SPDY_WINDOW_MAX)
                return sh_err(err, -EINVAL, "spdy: WINDOW_UPDATE delta %u", delta);
        if (w->size + delta > SPDY_WINDOW_MAX)
                return sh_err(err, -EOVERFLOW, "spdy: window %lld + %u passes 2^31-1",
                              (long long)w->size, delta);
        w->size += delta;
        return 0;
}

int spdy_window_set_initial(struct spdy_window *w, uint32_t initial, struct sh_error *err)
{
        int64_t size;

        if (initial > SPDY_WINDOW_MAX)
                return sh_err(err, -EINVAL, "spdy: initial window size %u", initial);
        /* Spec 2.6.8: the new size applies retroactively to open streams, so the window
         * moves by the difference and may go negative. */
        size = w->size + (int64_t)initial - w->initial;
        if (size > SPDY_WINDOW_MAX)
                return sh_err(err, -EOVERFLOW, "spdy: window would grow to %lld", (long long)size);
        w->size = size;
        w->initial = initial;
        return 0;
}

uint32_t spdy_window_release(struct spdy_window *w, uint32_t n)
{
        int64_t threshold = w->initial / 2 > 0 ? w->initial / 2 : 1;
        int64_t pending = (int64_t)w->pending + n;

        /* Releasing more than was consumed is a caller bug; never push the window past
         * 2^31-1, which the peer would answer with FLOW_CONTROL_ERROR. */
        if (pending > SPDY_WINDOW_MAX - w->size)
                pending = SPDY_WINDOW_MAX - w->size;
        if (pending < threshold) {
                w->pending = (uint32_t)pending;
                return 0;
        }
        w->pending = 0;
        w->size += pending;
        return (uint32_t)pending;
}

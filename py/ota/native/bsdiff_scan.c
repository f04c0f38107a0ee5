/*
 * The match scan of a BSDIFF40 diff, over a suffix array the caller sorted (py/ota/format/bsdiff.py gets
 * it from libdivsufsort), so that ota.actions.make_bsdiff.diff writes the same patch bytes as bsdiff4's diff at
 * compiled speed. docs/performance.md describes the algorithm and why it lives here; this file is
 * loaded through ctypes, so it needs no Python headers, only a C compiler.
 *
 * The scan walks the new file left to right. At each position it finds the longest match in the
 * old file by binary search of the sorted suffixes, and compares that match with simply carrying
 * on at the previous alignment (new position + the last offset). A new alignment is taken only
 * when the match is exact where the old alignment already matched as much, or longer by more than
 * 8 bytes. Between two alignments the gap is split three ways: a forward extension of the previous
 * match (bytes kept as differences against the old file), a backward extension of the new one,
 * and in between literal "extra" bytes. Each split is a control tuple (x = diff length, y = extra
 * length, z = seek in the old file after the diff), exactly as bsdiff 4.x computes them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct old_file {
  const uint8_t *bytes;
  int64_t size;
  /* Sorted suffixes of `bytes`, without the empty one: bsdiff's array has the empty suffix
   * (position `size`) first, which suffix_at adds instead of copying the array. */
  const int32_t *sorted;
};

static int64_t suffix_at(const struct old_file *old, int64_t rank) {
  return rank == 0 ? old->size : (int64_t)old->sorted[rank - 1];
}

/* The first index from `from` on where a and b differ, or `limit`: the length of their common
 * prefix when the first `from` bytes are known to agree. Eight bytes at a time, then one. */
static int64_t first_difference(const uint8_t *a, const uint8_t *b, int64_t from, int64_t limit) {
  int64_t at = from;
  for (; at + 8 <= limit; at += 8) {
    uint64_t a_word, b_word;
    memcpy(&a_word, a + at, 8);
    memcpy(&b_word, b + at, 8);
    if (a_word != b_word) break;
  }
  while (at < limit && a[at] == b[at]) at++;
  return at;
}

/* The length of the common prefix of the suffix at `rank` and `wanted`, from `known` agreeing
 * bytes on. */
static int64_t agreement(const struct old_file *old, int64_t rank, const uint8_t *wanted, int64_t wanted_size,
                         int64_t known) {
  int64_t start = suffix_at(old, rank);
  int64_t rest = old->size - start;
  return first_difference(old->bytes + start, wanted, known, rest < wanted_size ? rest : wanted_size);
}

/* The longest prefix of `wanted` found in the old file, and where: the binary search narrows the
 * ranks [0, size] to two neighbours and keeps the longer match (the higher rank on a tie).
 *
 * Each step decides as a memcmp of the suffix and `wanted` over their shorter length would, but
 * skips the prefix that both bounds already share with `wanted`: every suffix ranked between
 * them shares it too (they are sorted), so a long match costs its length once, not once per
 * step. The bounds' agreement lengths are then the two candidates' match lengths. */
static int64_t longest_match(const struct old_file *old, const uint8_t *wanted, int64_t wanted_size,
                             int64_t *where) {
  int64_t low = 0, high = old->size;
  int64_t low_agrees = agreement(old, low, wanted, wanted_size, 0);
  int64_t high_agrees = agreement(old, high, wanted, wanted_size, 0);
  while (high - low >= 2) {
    int64_t middle = low + (high - low) / 2;
    int64_t start = suffix_at(old, middle);
    int64_t rest = old->size - start;
    int64_t compared = rest < wanted_size ? rest : wanted_size;
    int64_t agrees = agreement(old, middle, wanted, wanted_size, low_agrees < high_agrees ? low_agrees : high_agrees);
    if (agrees < compared && old->bytes[start + agrees] < wanted[agrees]) {
      low = middle;
      low_agrees = agrees;
    } else {
      high = middle;
      high_agrees = agrees;
    }
  }
  if (low_agrees > high_agrees) {
    *where = suffix_at(old, low);
    return low_agrees;
  }
  *where = suffix_at(old, high);
  return high_agrees;
}

struct tuples {
  int64_t *values; /* x, y, z per tuple */
  int64_t count;
  int64_t capacity;
};

static int append(struct tuples *tuples, int64_t x, int64_t y, int64_t z) {
  if (tuples->count == tuples->capacity) {
    int64_t capacity = tuples->capacity ? 2 * tuples->capacity : 1024;
    int64_t *grown = realloc(tuples->values, (size_t)capacity * 3 * sizeof(int64_t));
    if (!grown) return -1;
    tuples->values = grown;
    tuples->capacity = capacity;
  }
  int64_t *slot = tuples->values + 3 * tuples->count++;
  slot[0] = x;
  slot[1] = y;
  slot[2] = z;
  return 0;
}

/*
 * Scans `new` against `old` whose non-empty suffixes `sorted` lists in order (old_size entries).
 * On success returns the number of control tuples, stores a malloc'd array of them (x, y, z each)
 * in *controls (release it with ota_bsdiff_free) and the diff and extra byte counts in
 * *diff_size and *extra_size; returns -1 when memory runs out.
 */
int64_t ota_bsdiff_scan(const uint8_t *old_bytes, int64_t old_size, const int32_t *sorted,
                        const uint8_t *new_bytes, int64_t new_size, int64_t **controls,
                        int64_t *diff_size, int64_t *extra_size) {
  const struct old_file old = {old_bytes, old_size, sorted};
  struct tuples tuples = {NULL, 0, 0};
  int64_t scan = 0, length = 0, match_start = 0;
  int64_t last_scan = 0, last_match = 0, last_offset = 0;
  int64_t diff_total = 0, extra_total = 0;

  while (scan < new_size) {
    int64_t same_alignment = 0; /* bytes of [scan, scan + length) that match at last_offset */
    int64_t counted = scan += length;
    for (; scan < new_size; scan++) {
      length = longest_match(&old, new_bytes + scan, new_size - scan, &match_start);
      for (; counted < scan + length; counted++)
        if (counted + last_offset < old_size && old_bytes[counted + last_offset] == new_bytes[counted])
          same_alignment++;
      if ((length == same_alignment && length != 0) || length > same_alignment + 8) break;
      if (scan + last_offset < old_size && old_bytes[scan + last_offset] == new_bytes[scan])
        same_alignment--;
    }
    if (length == same_alignment && scan != new_size) continue;

    /* Forward: the prefix after the last match where at least half the bytes still agree. */
    int64_t forward = 0;
    {
      int64_t agree = 0, best = 0;
      for (int64_t i = 0; last_scan + i < scan && last_match + i < old_size;) {
        if (old_bytes[last_match + i] == new_bytes[last_scan + i]) agree++;
        i++;
        if (agree * 2 - i > best * 2 - forward) {
          best = agree;
          forward = i;
        }
      }
    }
    /* Backward: the same, leftwards from the new match. */
    int64_t backward = 0;
    if (scan < new_size) {
      int64_t agree = 0, best = 0;
      for (int64_t i = 1; scan >= last_scan + i && match_start >= i; i++) {
        if (old_bytes[match_start - i] == new_bytes[scan - i]) agree++;
        if (agree * 2 - i > best * 2 - backward) {
          best = agree;
          backward = i;
        }
      }
    }
    /* Where the two extensions overlap, split at the point that keeps the most agreeing bytes. */
    if (last_scan + forward > scan - backward) {
      int64_t overlap = (last_scan + forward) - (scan - backward);
      int64_t balance = 0, best = 0, split = 0;
      for (int64_t i = 0; i < overlap; i++) {
        if (new_bytes[last_scan + forward - overlap + i] == old_bytes[last_match + forward - overlap + i]) balance++;
        if (new_bytes[scan - backward + i] == old_bytes[match_start - backward + i]) balance--;
        if (balance > best) {
          best = balance;
          split = i + 1;
        }
      }
      forward += split - overlap;
      backward -= split;
    }

    int64_t extra = (scan - backward) - (last_scan + forward);
    if (append(&tuples, forward, extra, (match_start - backward) - (last_match + forward)) != 0) {
      free(tuples.values);
      return -1;
    }
    diff_total += forward;
    extra_total += extra;
    last_scan = scan - backward;
    last_match = match_start - backward;
    last_offset = match_start - scan;
  }
  *controls = tuples.values;
  *diff_size = diff_total;
  *extra_size = extra_total;
  return tuples.count;
}

/* bsdiff's offset encoding: the magnitude little-endian, the sign in the top bit. */
static void encode_offset(int64_t value, uint8_t *out) {
  uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(magnitude >> (8 * i));
  if (value < 0) out[7] |= 0x80;
}

/*
 * Writes the three uncompressed streams the `count` tuples describe: the encoded tuples (24 bytes
 * each) to `control`, the bytewise differences new - old to `diff`, the literal bytes to `extra`.
 * Done after the scan, so that the suffix array is freed before these buffers are filled.
 */
void ota_bsdiff_streams(const uint8_t *old_bytes, const uint8_t *new_bytes, const int64_t *controls,
                        int64_t count, uint8_t *control, uint8_t *diff, uint8_t *extra) {
  int64_t new_position = 0, old_position = 0;
  for (int64_t t = 0; t < count; t++) {
    int64_t x = controls[3 * t], y = controls[3 * t + 1], z = controls[3 * t + 2];
    encode_offset(x, control);
    encode_offset(y, control + 8);
    encode_offset(z, control + 16);
    control += 24;
    for (int64_t i = 0; i < x; i++) diff[i] = (uint8_t)(new_bytes[new_position + i] - old_bytes[old_position + i]);
    diff += x;
    memcpy(extra, new_bytes + new_position + x, (size_t)y);
    extra += y;
    new_position += x + y;
    old_position += x + z;
  }
}

void ota_bsdiff_free(void *pointer) { free(pointer); }

"""File names as Starlark holds them: a string whose characters are the name's bytes.

An install path may hold any byte but NUL and '/' (docs/contracts.md, "File names"), and Bazel 4
keeps each byte of a BUILD file's string as one character, so such a path is data the rules pass
on unchanged. What must not happen is a path becoming a label or a file name: Bazel refuses '\\'
in a target name and fails non-ASCII exec paths with "missing input file". The helpers here turn
a path into text that is safe where only printable ASCII is (`escape`, the same escape as
`escape` in py/ota/format/paths.py) and into a safe artifact name (`artifact_name`).
"""

# Every byte value, in order: _BYTES[i] is the character of byte i.
_BYTES = "\000\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020\021\022\023\024\025\026\027\030\031\032\033\034\035\036\037\040\041\042\043\044\045\046\047\050\051\052\053\054\055\056\057\060\061\062\063\064\065\066\067\070\071\072\073\074\075\076\077\100\101\102\103\104\105\106\107\110\111\112\113\114\115\116\117\120\121\122\123\124\125\126\127\130\131\132\133\134\135\136\137\140\141\142\143\144\145\146\147\150\151\152\153\154\155\156\157\160\161\162\163\164\165\166\167\170\171\172\173\174\175\176\177\200\201\202\203\204\205\206\207\210\211\212\213\214\215\216\217\220\221\222\223\224\225\226\227\230\231\232\233\234\235\236\237\240\241\242\243\244\245\246\247\250\251\252\253\254\255\256\257\260\261\262\263\264\265\266\267\270\271\272\273\274\275\276\277\300\301\302\303\304\305\306\307\310\311\312\313\314\315\316\317\320\321\322\323\324\325\326\327\330\331\332\333\334\335\336\337\340\341\342\343\344\345\346\347\350\351\352\353\354\355\356\357\360\361\362\363\364\365\366\367\370\371\372\373\374\375\376\377"

# Printable ASCII that stands for itself in an escaped name; everything else is a 3-digit octal
# escape, which is valid inside a Starlark (and C, and protobuf text) string literal.
_PLAIN = " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"

_DIGITS = "01234567"

def _octal_escape(index):
    return "\\" + _DIGITS[index // 64] + _DIGITS[(index // 8) % 8] + _DIGITS[index % 8]

_ESCAPES = {_BYTES[i]: (_BYTES[i] if _BYTES[i] in _PLAIN else _octal_escape(i)) for i in range(256)}

NUL = _BYTES[0]

# The updater's scratch directory under the system root: no install path may start with it. The
# same name as SCRATCH_DIR in py/ota/format/paths.py, which the build tools and the device check.
SCRATCH_DIR = ".ota-scratch"

_SCRATCH_TOP = "/" + SCRATCH_DIR + "/"

# What joins paths in all_install_paths: '/' ends one framed path and starts the next, and NUL,
# which no path may hold, tells where one ends.
_JOIN = "/" + NUL + "/"

def is_install_path(p):
    """True when `p` is a legal install path in normal form (docs/contracts.md, "File names").

    That is: not empty, no NUL, no empty, '.' or '..' component (so no leading or trailing '/'),
    not below SCRATCH_DIR. A few substring tests on the path framed by '/', no split: a tree may
    hold tens of thousands of paths.
    """
    framed = "/" + p + "/"
    return not (NUL in p or "//" in framed or "/./" in framed or "/../" in framed or framed.startswith(_SCRATCH_TOP))

def all_install_paths(paths):
    """True when every one of `paths` is_install_path, tested on all of them at once.

    The paths joined by "/<NUL>/" and framed by '/' hold "//", "/./", "/../" or a "/.ota-scratch/"
    that starts a path exactly when one of them does, and as many NULs as joins unless one holds
    a NUL: a handful of native substring tests for a whole tree, where calling is_install_path on
    each path costs a Starlark call per entry. A caller that gets False finds the culprit with
    is_install_path.

    Args:
      paths: a list of install paths.

    Returns:
      True when each is a legal install path in normal form.
    """
    if not paths:
        return True
    joined = "/" + _JOIN.join(paths) + "/"
    return not (
        joined.count(NUL) != len(paths) - 1 or "//" in joined or "/./" in joined or "/../" in joined or
        joined.startswith(_SCRATCH_TOP) or (_JOIN + SCRATCH_DIR + "/") in joined
    )

def install_path_problem(path, p):
    """What is wrong with install path `path` (`p` once normalized), for a one-line message.

    Args:
      path: the path as given, shown `escape`d.
      p: the path once normalized, which is_install_path refused.

    Returns:
      The problem, e.g. `install path "a//b": an empty component ('//') is not allowed`.
    """
    if not p:
        return "empty install path"
    shown = escape(path)
    if NUL in p:
        return "install path \"%s\": a NUL byte is not allowed in a file name" % shown
    for part in p.split("/"):
        if part == "":
            return "install path \"%s\": an empty component ('//') is not allowed" % shown
        if part in (".", ".."):
            return "install path \"%s\": a '%s' component is not allowed" % (shown, part)
    return "install path \"%s\": '%s' at the top of the tree is reserved for the updater's scratch files" % (shown, SCRATCH_DIR)

def escape(name):
    """`name` as one line of printable ASCII: other bytes, '\\' and '"' become 3-digit octal escapes.

    Put between double quotes it is a Starlark string literal of exactly `name`, which is how
    generated BUILD files carry any file name, and how a message shows one on one line.
    """
    return "".join([_ESCAPES[c] for c in name.elems()])

def artifact_name(path, used):
    """A file name for an artifact about install path `path`: "<length>_<hash>", unique in `used`.

    Never derived from the path's characters (which may be any bytes, and up to 4,095 of them),
    yet the same for the same path in every build as long as no other path of the same length
    hashes alike, so a rebuild keeps its action keys. `used` (a dict) collects the names given;
    a collision gets a numbered suffix, in the order the caller asks (callers ask in sorted order).

    Args:
      path: the install path the artifact is about.
      used: dict of the names given so far (name -> path); the new name is added.

    Returns:
      The artifact name: ASCII letters, digits and '_', never a path.
    """
    base = "%d_%d" % (len(path), hash(path) & 0xffffffff)
    name = base
    for n in range(1, len(used) + 2):
        if name not in used:
            break
        name = "%s_%d" % (base, n)
    used[name] = path
    return name

// A character as `charlstm sample` names it (charlstm/errors.py): as typed
// where it can be seen on its own, by its escape where it cannot (a
// no-break space, a tab, a combining accent, which would sit on the quote).
function named(ch) {
  const special = { "'": "\"'\"", "\n": "'\\n'", "\t": "'\\t'", "\r": "'\\r'" };
  if (special[ch]) return special[ch];
  if (ch !== " " && /[\p{C}\p{Z}\p{M}]/u.test(ch)) {
    const c = ch.codePointAt(0), hex = c.toString(16);
    return "'\\" + (c < 0x100 ? "x" + hex.padStart(2, "0") : c < 0x10000 ? "u" + hex.padStart(4, "0") : "U" + hex.padStart(8, "0")) + "'";
  }
  return "'" + ch + "'";
}

// The line a prime's unknown characters get, worded as `charlstm sample`
// words it (core/generation.py, known_form), or "" when every character is
// known (`known(ch)`). Text pasted from macOS has its accents apart (NFD)
// where the model's had them composed (NFC): they look the same, so the
// line says which form the model knows instead of only "remove them".
// The document boundary U+FDD0 is no character: a prime may start with it
// (a document's start), never hold it further on (generation.unknown_in).
function unknownLine(text, known) {
  const isUnknown = (ch, i) => !known(ch) || (ch === "\uFDD0" && i > 0);
  const unknownIn = (t) => Array.from(new Set(Array.from(t).filter(isUnknown))).sort();
  const unknown = unknownIn(text);
  if (!unknown.length) return "";
  const them = unknown.length > 1 ? "them" : "it";
  const how = { NFC: "composed, one character each", NFD: "decomposed, letters and accents apart" };
  const form = ["NFC", "NFD"].find((f) => unknownIn(text.normalize(f)).length === 0);
  const hint = form ? "the model knows " + them + " written in Unicode's " + form + " form (" + how[form] + "): write " + them + " so, or " : "";
  return "The model never saw " + unknown.map(named).join(", ") + ": " + hint + "remove " + them + " to generate.";
}

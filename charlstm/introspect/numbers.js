// Whether a number box's text reads as 0 only because the number is too
// small for a double (1e-400): a digit other than 0 before any exponent.
// Both writing pages refuse such a box by name, where 0 would silently
// mean greedy for the temperature.
function tooSmallToTell(raw) {
  return Number(raw) === 0 && /[1-9]/.test(raw.trim().replace(/[eE].*$/, ""));
}

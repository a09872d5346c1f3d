// Package scoring is the DIVDS evaluation module (IVE): the admin's Policy,
// the severity weights, the whitelist, the image score and the Verdict.
//
// It is pure code: it reads no file, opens no socket and keeps no global
// state, so that the CLI, the plugin and the tests all reach the same
// verdict for the same inputs. Callers hand it the policy bytes and the
// findings; the clock is an argument too.
//
// Scores are kept in integer hundredths (Points). The design's weights have
// two decimals (5.45, 7.95) and a float sum of them drifts (297.40000000000003);
// an admin comparing a printed score with θ must see exactly what was compared.
package scoring

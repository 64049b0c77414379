// Query views for exact-item search.
//
// A shopper's photo of an item departs from the catalog's photo of it most in
// framing: tilted, cropped closer, or the item small on a page or a screen. The
// engine embeds a few re-framed views of an exact-item query photo and scores each
// product by its best view, so that one view lines up with the catalog's framing
// when the photo itself does not. Which views, and what each bought on the
// distortion suite: README, "Instance robustness".
#pragma once

#include <vector>

#include "image/image.h"

namespace lookalike::image {

inline constexpr double kViewRotationDegrees = 25;  // either way: the middle of a phone's usual tilt
// A re-framed view's similarity counts this much less than the photo's own. Every
// view is another chance for a wrong product to look closest; the handicap lets a
// view win only where it lines up clearly better (on the demo suite 0.05 kept the
// rotation views' gain and most of what they cost the other distortions).
inline constexpr double kViewHandicap = 0.05;

// A flat item photographed at an angle shows the side farther from the camera
// shorter: its two corners closer together. Each keystone view widens one side of
// the photo back by this share of the side at either end, as if seen square-on
// (the middle of the 10-22 % of the suite's perspective distortion; on the demo
// suite these lifted perspective from 0.65 to 0.87).
inline constexpr double kViewKeystone = 0.16;

// Windows over a photo whose border is not a plain background (the item on a busy
// table, a page, a screen): per_row x per_row windows of `side` times the photo's
// width and height, spread evenly from corner to corner. The item lies anywhere and
// at some size, so one window frames it close to the catalog's framing. On the demo
// suite these lifted clutter from 0.17 to 0.51 and the printed page from 0.37 to
// 0.41 (README, "Instance robustness").
struct WindowGrid {
  double side;
  int per_row;
};
inline constexpr WindowGrid kWindowGrids[] = {{0.625, 4}, {0.8, 3}};

// Views are made from the photo shrunk to at most this many pixels on its longer
// side (a 50-megapixel upload would otherwise make 28 views of up to 150 MB each):
// the smallest window still has 640 pixels a side, more than a model's input needs.
inline constexpr int kViewMaxSide = 1024;

// The photo itself first (shrunk to kViewMaxSide when larger), then:
//   - rotated by +kViewRotationDegrees and by -kViewRotationDegrees;
//   - when its border is a plain background: cropped to its foreground, if the
//     foreground's bounding box leaves out a fair part of the frame (an item small
//     in the photo, or shrunk by the camera's angle); then the four keystone views
//     (kViewKeystone), the top side widened back first, then the right, the bottom
//     and the left;
//   - when its border is not plain: the windows of kWindowGrids, grid by grid, row
//     by row.
// New pixels take the background colour: the per-channel median of the border. A
// gray photo gives gray views.
// Throws Error(kInvalidInput) for an empty image or one whose pixel buffer does not
// match its size. Pure function: thread-safe.
std::vector<Image> exact_match_views(const Image& photo);

}  // namespace lookalike::image

//! A view's three float planes across the two passes of a tiled colour chain
//! (both jitters split their op chain at contrast, whose mean needs every
//! pixel first). When ops precede the split, the planes are kept whole
//! between the passes and each tile is worked on in place there; otherwise
//! one tile-sized set of planes is reused and each pass loads it afresh.

/// The planes of a view of `n` pixels, tile by tile (`T` pixels a tile).
pub(crate) struct TiledPlanes<'a, const T: usize> {
    kept: [&'a mut [f32]; 3],
    keep: bool,
    tile: [[f32; T]; 3],
}

impl<'a, const T: usize> TiledPlanes<'a, T> {
    /// Kept whole in `store` (resized to `3 n`) when `keep`, else one tile.
    #[inline(always)]
    pub(crate) fn new(store: &'a mut Vec<f32>, n: usize, keep: bool) -> Self {
        let kept = if keep { n } else { 0 };
        store.resize(3 * kept, 0.0);
        let (r, rest) = store.split_at_mut(kept);
        let (g, b) = rest.split_at_mut(kept);
        TiledPlanes {
            kept: [r, g, b],
            keep,
            tile: [[0.0; T]; 3],
        }
    }

    /// Whether the planes are kept between the passes (a tile then holds the
    /// first pass's values in the second, and is not loaded again).
    #[inline(always)]
    pub(crate) fn kept(&self) -> bool {
        self.keep
    }

    /// The `m` <= `T` pixels of tile `i` (pixels `i T..i T + m`) as three
    /// planes.
    #[inline(always)]
    pub(crate) fn tile(&mut self, i: usize, m: usize) -> (&mut [f32], &mut [f32], &mut [f32]) {
        if self.keep {
            let at = i * T;
            let [r, g, b] = &mut self.kept;
            (&mut r[at..at + m], &mut g[at..at + m], &mut b[at..at + m])
        } else {
            let [r, g, b] = &mut self.tile;
            (&mut r[..m], &mut g[..m], &mut b[..m])
        }
    }
}

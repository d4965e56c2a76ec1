//! The PNG backend: plotters' `BitMapBackend` with text laid out here.
//!
//! plotters 0.3.7 draws ab_glyph text into a bitmap by placing each glyph's rasterised box at
//! the pen position, dropping the glyph's left side bearing (the box starts at the outline's
//! first inked column, which sits `bearing` pixels right of the pen). Letters then touch or
//! drift apart depending on their shapes, and PNG labels look cramped against the SVG, where
//! the viewer lays text out. [`Png`] forwards everything to the bitmap backend except text in
//! our embedded font, which it positions glyph by glyph at the pen (advance plus kerning,
//! fractional) so the rasteriser puts each outline at its bearing. Anchoring, the text's
//! estimated box (which charts use to size label areas), the vertical placement and the
//! colour blending are plotters' own, so only the horizontal glyph placement changes.

use std::path::Path;

use ab_glyph::{Font, FontRef, GlyphId, ScaleFont, point};
use plotters::prelude::{BitMapBackend, DrawingBackend};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

use super::plot::{DEJAVU_SANS, FONT};

/// A bitmap backend that draws text in [`FONT`] with each glyph's side bearings kept.
pub struct Png<'a> {
    inner: BitMapBackend<'a>,
    /// The embedded font, or `None` if it does not parse (then plotters draws the text, and
    /// `register_font` has already reported the font as broken).
    font: Option<FontRef<'static>>,
}

impl<'a> Png<'a> {
    /// A PNG of `size` pixels written to `path` when presented.
    pub fn new(path: &'a Path, size: (u32, u32)) -> Self {
        Png::wrap(BitMapBackend::new(path, size))
    }

    /// Wraps a bitmap backend (tests draw into a buffer).
    pub fn wrap(inner: BitMapBackend<'a>) -> Self {
        Png {
            inner,
            font: FontRef::try_from_slice(DEJAVU_SANS).ok(),
        }
    }
}

/// The bitmap backend's error (its type is not exported by plotters).
type Inner = <BitMapBackend<'static> as DrawingBackend>::ErrorType;
type Failure = DrawingErrorKind<Inner>;

impl DrawingBackend for Png<'_> {
    type ErrorType = Inner;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), Failure> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), Failure> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Failure> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Failure> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Failure> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Failure> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Failure> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Failure> {
        self.inner.fill_polygon(vert, style)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), Failure> {
        let Some(font) = self
            .font
            .clone()
            .filter(|_| style.family().as_str() == FONT)
        else {
            return self.inner.draw_text(text, style, pos);
        };
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        // The box plotters estimated (and sized the chart's label areas with), anchored as
        // plotters anchors it.
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|error| DrawingErrorKind::FontError(Box::new(error)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.inner.get_size();
        let size = style.size() as f32;
        let scaled = font.as_scaled(size);
        let mut pen = 0f32;
        let mut previous: Option<GlyphId> = None;
        let mut coverage = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(previous) = previous {
                pen += scaled.kern(previous, id);
            }
            previous = Some(id);
            let mut glyph = scaled.scaled_glyph(c);
            glyph.position = point(pen, 0.0);
            pen += scaled.h_advance(id);
            let Some(outline) = scaled.outline_glyph(glyph) else {
                continue;
            };
            // The outline's pixel box starts at pen + bearing; its top as plotters puts it.
            let bounds = outline.px_bounds();
            let left = bounds.min.x as i32;
            let top = (size / 2.0 + bounds.min.y) as i32;
            coverage.clear();
            outline.draw(|x, y, alpha| coverage.push((x, y, alpha)));
            for &(x, y, alpha) in &coverage {
                let (x, y) =
                    transform.transform(left + x as i32 + dx - min_x, top + y as i32 + dy - min_y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                    self.inner.draw_pixel((x, y), color.mix(f64::from(alpha)))?;
                }
            }
        }
        Ok(())
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), Failure> {
        self.inner.estimate_text_size(text, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), Failure> {
        self.inner.blit_bitmap(pos, size, src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::prelude::*;

    const W: u32 = 200;
    const H: u32 = 120;

    /// The leftmost column with any ink in an RGB buffer on white.
    fn first_inked_column(buffer: &[u8]) -> Option<u32> {
        (0..W).find(|&x| {
            (0..H).any(|y| {
                let at = ((y * W + x) * 3) as usize;
                buffer[at..at + 3] != [255, 255, 255]
            })
        })
    }

    /// Draws `text` left-anchored at x = 10 with plotters' backend or ours.
    fn draw(text: &str, ours: bool) -> Vec<u8> {
        super::super::plot::register_font().expect("font");
        let mut buffer = vec![255u8; (W * H * 3) as usize];
        {
            let bitmap = BitMapBackend::with_buffer(&mut buffer, (W, H));
            let style = TextStyle::from((FONT, 100).into_font()).color(&BLACK);
            if ours {
                Png::wrap(bitmap).draw_text(text, &style, (10, 10))
            } else {
                let mut bitmap = bitmap;
                bitmap.draw_text(text, &style, (10, 10))
            }
            .expect("draw");
        }
        buffer
    }

    /// Method: "1" in DejaVu Sans has a left side bearing of about 0.11 em (11 px at this
    /// size, read from the font's metrics, not from the rasteriser's boxes). Our text starts
    /// inking there; plotters' own path inks from the pen (the bug this module exists for),
    /// which shows the check can fail.
    #[test]
    fn text_keeps_the_left_side_bearing() {
        let font = FontRef::try_from_slice(DEJAVU_SANS).expect("font");
        let scaled = font.as_scaled(100.0);
        let bearing = scaled.h_side_bearing(scaled.glyph_id('1'));
        assert!(bearing > 5.0, "the test needs a visible bearing: {bearing}");
        let expected = 10 + bearing.floor() as u32;
        let ours = first_inked_column(&draw("1", true)).expect("ink");
        assert!(
            ours.abs_diff(expected) <= 1,
            "ours starts at {ours}, the bearing puts it at {expected}"
        );
        let theirs = first_inked_column(&draw("1", false)).expect("ink");
        assert!(
            theirs.abs_diff(expected) > 3,
            "plotters' path now keeps the bearing ({theirs}); this wrapper may be unneeded"
        );
    }

    /// Method: the same text drawn twice gives the same pixels (the PNGs are compared byte
    /// for byte in CI).
    #[test]
    fn text_is_drawn_the_same_every_time() {
        assert_eq!(draw("Tj1 ,.", true), draw("Tj1 ,.", true));
    }
}

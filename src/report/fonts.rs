//! The font used for text in every figure.
//!
//! plotters is built with its `ab_glyph` text backend, which has no system-font lookup: a
//! font must be registered before any text is drawn. We bundle DejaVu Sans 2.37 (Bitstream
//! Vera licence, permissive; the copy comes from Debian's `fonts-dejavu-core`, its licence is
//! `assets/fonts/LICENSE-DejaVu.txt`) so figures render identically everywhere, with no
//! download and no dependency on the fonts installed on the machine.

use std::sync::Once;

use plotters::style::FontStyle;

/// The family name under which the bundled font is registered; it is also plotters'
/// name for [`plotters::style::FontFamily::SansSerif`], so `("sans-serif", size)` works.
pub const FAMILY: &str = "sans-serif";

/// DejaVu Sans, regular.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font for every style of [`FAMILY`] (bold and italic fall back to
/// the regular face). Idempotent and cheap after the first call; every figure function calls
/// it, so callers never need to.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            // The bytes are a valid TrueType font compiled into the binary: a failure here
            // would be a packaging error, and text would merely be missing.
            let _ = plotters::style::register_font(FAMILY, style, DEJAVU_SANS);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_font_parses_and_registers() {
        register();
        register();
        let font = plotters::style::FontDesc::new(
            plotters::style::FontFamily::SansSerif,
            12.0,
            FontStyle::Normal,
        );
        let (w, h) = font
            .box_size("Dice WT")
            .expect("registered font lays out text");
        assert!(w > 20 && h > 5, "{w}x{h}");
    }
}

//! "Scan a code": reading the pairing QR code another device shows, with this device's camera.
//!
//! A phone can show a QR code but, before this, could not read one inside Ferry. The camera
//! view samples a frame a few times a second; a frame is decoded by the browser's
//! `BarcodeDetector` where it exists (Chrome on Android and macOS, Safari) and otherwise by
//! `rqrr` in wasm (Chromium on Linux and Windows, Firefox): the decoder part below is pure and
//! host-tested. The camera itself is page-local I/O like the clipboard: the dialog component
//! asks [`camera`] for it and drops it on close, which stops every track.

/// The largest frame side decoded: a phone camera's full frame is slower to scan in wasm and
/// a pairing QR code filling a fraction of a 640 px frame still reads.
pub const MAX_FRAME_SIDE: u32 = 640;

/// The text of the first QR code found in a greyscale image of `width` × `height` pixels
/// (`luma` row by row), if any reads.
pub fn decode_luma(width: usize, height: usize, luma: &[u8]) -> Option<String> {
    if width == 0 || height == 0 || luma.len() < width * height {
        return None;
    }
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| luma[y * width + x]);
    img.detect_grids()
        .into_iter()
        .find_map(|grid| grid.decode().ok().map(|(_, text)| text))
}

/// Greyscale of RGBA pixels (a canvas's `ImageData`), by the usual luma weights.
pub fn luma_from_rgba(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .map(|p| {
            ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
        })
        .collect()
}

/// The frame size to sample from a video of `width` × `height`: scaled down so its longer
/// side is at most [`MAX_FRAME_SIDE`], never up.
pub fn frame_size(width: u32, height: u32) -> (u32, u32) {
    let longer = width.max(height);
    if longer <= MAX_FRAME_SIDE || longer == 0 {
        return (width, height);
    }
    let scale =
        |v: u32| ((u64::from(v) * u64::from(MAX_FRAME_SIDE)) / u64::from(longer)).max(1) as u32;
    (scale(width), scale(height))
}

/// Why the camera could not be used, in words for the person holding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The person (or the browser's settings) refused the camera.
    #[error(
        "Ferry may not use the camera. Allow it in the browser's site settings, or open the link on this device instead."
    )]
    Denied,
    /// No camera, or another app holds it.
    #[error("No camera could be opened on this device. Open the link on this device instead.")]
    NoCamera,
    /// Anything else the browser reported.
    #[error("The camera could not start ({0}).")]
    Other(String),
}

#[cfg(target_arch = "wasm32")]
pub mod camera {
    //! The browser half: the camera stream, and one frame's decode.
    use super::{ScanError, decode_luma, frame_size, luma_from_rgba};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{
        CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement, MediaStream,
        MediaStreamConstraints,
    };

    /// Whether this device has a camera to offer "Scan a code" for.
    pub async fn available() -> bool {
        let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok())
        else {
            return false;
        };
        let Ok(list) = devices.enumerate_devices() else {
            return false;
        };
        let Ok(list) = JsFuture::from(list).await else {
            return false;
        };
        js_sys::Array::from(&list).iter().any(|d| {
            d.dyn_into::<web_sys::MediaDeviceInfo>()
                .is_ok_and(|d| d.kind() == web_sys::MediaDeviceKind::Videoinput)
        })
    }

    /// An open camera shown in a `<video>`. Dropping it stops the camera (its light goes off).
    pub struct Camera {
        stream: MediaStream,
        canvas: HtmlCanvasElement,
        detector: Option<JsValue>,
    }

    impl Camera {
        /// Opens the back camera where there is one and shows it in `video`.
        pub async fn open(video: &HtmlVideoElement) -> Result<Camera, ScanError> {
            let devices = web_sys::window()
                .and_then(|w| w.navigator().media_devices().ok())
                .ok_or(ScanError::NoCamera)?;
            let constraints = MediaStreamConstraints::new();
            let video_wanted = js_sys::Object::new();
            let _ =
                js_sys::Reflect::set(&video_wanted, &"facingMode".into(), &"environment".into());
            constraints.set_video(&video_wanted);
            constraints.set_audio(&JsValue::FALSE);
            let promise = devices
                .get_user_media_with_constraints(&constraints)
                .map_err(|e| error_of(&e))?;
            let stream: MediaStream = JsFuture::from(promise)
                .await
                .map_err(|e| error_of(&e))?
                .dyn_into()
                .map_err(|_| ScanError::Other("not a media stream".into()))?;
            video.set_src_object(Some(&stream));
            video.set_muted(true);
            let _ = video.set_attribute("playsinline", "");
            if let Ok(p) = video.play() {
                let _ = JsFuture::from(p).await;
            }
            let canvas = gloo_utils_document()
                .create_element("canvas")
                .map_err(|e| error_of(&e))?
                .dyn_into::<HtmlCanvasElement>()
                .map_err(|_| ScanError::Other("no canvas".into()))?;
            Ok(Camera {
                stream,
                canvas,
                detector: barcode_detector(),
            })
        }

        /// The text of a QR code in the video's current frame, if one reads.
        pub async fn read(&self, video: &HtmlVideoElement) -> Option<String> {
            if video.video_width() == 0 {
                return None;
            }
            if let Some(detector) = &self.detector {
                return detect_with(detector, video).await;
            }
            let (w, h) = frame_size(video.video_width(), video.video_height());
            self.canvas.set_width(w);
            self.canvas.set_height(h);
            let ctx: CanvasRenderingContext2d = self
                .canvas
                .get_context("2d")
                .ok()
                .flatten()?
                .dyn_into()
                .ok()?;
            ctx.draw_image_with_html_video_element_and_dw_and_dh(
                video,
                0.0,
                0.0,
                f64::from(w),
                f64::from(h),
            )
            .ok()?;
            let data = ctx
                .get_image_data(0.0, 0.0, f64::from(w), f64::from(h))
                .ok()?
                .data();
            decode_luma(w as usize, h as usize, &luma_from_rgba(&data))
        }
    }

    impl Drop for Camera {
        fn drop(&mut self) {
            for track in self.stream.get_tracks().iter() {
                if let Ok(track) = track.dyn_into::<web_sys::MediaStreamTrack>() {
                    track.stop();
                }
            }
        }
    }

    fn gloo_utils_document() -> web_sys::Document {
        leptos::prelude::document()
    }

    /// The browser's QR detector, where it has one that reads QR codes.
    fn barcode_detector() -> Option<JsValue> {
        let global = js_sys::global();
        let class = js_sys::Reflect::get(&global, &"BarcodeDetector".into()).ok()?;
        let class: js_sys::Function = class.dyn_into().ok()?;
        let options = js_sys::Object::new();
        let formats = js_sys::Array::of1(&"qr_code".into());
        js_sys::Reflect::set(&options, &"formats".into(), &formats).ok()?;
        js_sys::Reflect::construct(&class, &js_sys::Array::of1(&options)).ok()
    }

    async fn detect_with(detector: &JsValue, video: &HtmlVideoElement) -> Option<String> {
        let detect: js_sys::Function = js_sys::Reflect::get(detector, &"detect".into())
            .ok()?
            .dyn_into()
            .ok()?;
        let promise: js_sys::Promise = detect.call1(detector, video).ok()?.dyn_into().ok()?;
        let found = JsFuture::from(promise).await.ok()?;
        js_sys::Array::from(&found).iter().find_map(|code| {
            js_sys::Reflect::get(&code, &"rawValue".into())
                .ok()?
                .as_string()
        })
    }

    fn error_of(e: &JsValue) -> ScanError {
        let name = js_sys::Reflect::get(e, &"name".into())
            .ok()
            .and_then(|n| n.as_string())
            .unwrap_or_default();
        match name.as_str() {
            "NotAllowedError" | "SecurityError" => ScanError::Denied,
            "NotFoundError" | "NotReadableError" | "OverconstrainedError" => ScanError::NoCamera,
            _ => ScanError::Other(if name.is_empty() {
                "unknown".into()
            } else {
                name
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QR code of `text` drawn as a greyscale image: `scale` pixels a module, a quiet zone
    /// of four modules, placed at (`dx`, `dy`) in a `w` × `h` mid-grey frame.
    fn picture(text: &str, scale: usize, w: usize, h: usize, dx: usize, dy: usize) -> Vec<u8> {
        let code = qrcode::QrCode::new(text.as_bytes()).expect("encodes");
        let n = code.width();
        let colors = code.to_colors();
        let mut img = vec![160u8; w * h];
        let side = (n + 8) * scale;
        for y in 0..side {
            for x in 0..side {
                let (mx, my) = ((x / scale) as isize - 4, (y / scale) as isize - 4);
                let dark = mx >= 0
                    && my >= 0
                    && (mx as usize) < n
                    && (my as usize) < n
                    && colors[my as usize * n + mx as usize] == qrcode::Color::Dark;
                img[(y + dy) * w + x + dx] = if dark { 20 } else { 240 };
            }
        }
        img
    }

    #[test]
    fn a_pairing_link_in_a_camera_frame_reads_back() {
        let link = "http://198.51.100.2:8080/#pair=q2Yb8kT0cWm3HjE0kQz9fA7Pq9xVb1nLrT5uYs2dKcM&signal=ws%3A%2F%2F198.51.100.2%3A3536";
        let img = picture(link, 5, 640, 480, 100, 20);
        assert_eq!(decode_luma(640, 480, &img).as_deref(), Some(link));
    }

    #[test]
    fn a_frame_without_a_code_or_a_bad_size_reads_nothing() {
        assert_eq!(decode_luma(64, 48, &vec![128; 64 * 48]), None);
        assert_eq!(decode_luma(64, 48, &[0; 10]), None);
        assert_eq!(decode_luma(0, 0, &[]), None);
    }

    #[test]
    fn rgba_becomes_luma_and_frames_shrink_to_the_largest_side() {
        assert_eq!(
            luma_from_rgba(&[255, 255, 255, 255, 0, 0, 0, 255, 255, 0, 0, 255]),
            vec![255, 0, 76]
        );
        assert_eq!(frame_size(1920, 1080), (640, 360));
        assert_eq!(frame_size(480, 640), (480, 640));
        assert_eq!(frame_size(1080, 1920), (360, 640));
        assert_eq!(frame_size(0, 0), (0, 0));
    }
}

//! The card of a file item. Split from the row because it follows the file's transfer state
//! (kept by the runtime per root), not the message: progress, preview, Save, Cancel, Retry.

use crate::view::{FileInfo, FileState, Intent, Intents, ViewState, format_size, percent};
use leptos::prelude::*;

/// A file in the history: name, size and type at once; progress, preview and save as its
/// bytes arrive.
#[component]
pub(super) fn FileCard(file: FileInfo) -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let root = file.root;
    // Transfer states are keyed by the root's hex.
    let key = root.to_string();
    let state = Memo::new(move |_| {
        view.files
            .with(|f| f.get(&key).cloned().unwrap_or_default())
    });
    let name = file.name.clone();
    let size = file.size;
    let kind = if file.mime.is_empty() {
        "file".to_string()
    } else {
        file.mime.clone()
    };
    let is_image = file.mime.starts_with("image/");
    let is_video = file.mime.starts_with("video/");
    let label = format!("Transfer of {name}");
    let (cancel_label, retry_label, save_label) = (
        format!("Cancel download of {name}"),
        format!("Retry download of {name}"),
        format!("Save {name}"),
    );
    let preview_alt = format!("Preview of {name}");
    let name_s = name.clone();
    let (i_c, i_r, i_s) = (intents.clone(), intents.clone(), intents);
    view! {
        <div class="file">
            {move || state.with(|s| s.preview.clone()).map(|url| {
                if is_video {
                    view! { <video class="preview" controls preload="metadata" src=url aria-label=preview_alt.clone()></video> }.into_any()
                } else if is_image {
                    // The image opens the viewer, full size.
                    let viewer = expect_context::<super::Viewer>();
                    view! {
                        <button type="button" class="preview-open" title="View full size"
                            data-view-root=root.to_string()
                            on:click=move |_| viewer.at.set(Some(root))>
                            <img class="preview" src=url alt=preview_alt.clone()/>
                        </button>
                    }.into_any()
                } else {
                    ().into_any()
                }
            })}
            <p class="file-head">
                <svg class="file-icon" aria-hidden="true" viewBox="0 0 24 24" width="18" height="18"
                    fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round">
                    <path d="M6 2h8l4 4v16H6z"/><path d="M14 2v4h4"/>
                </svg>
                <span class="file-name">{name.clone()}</span>
            </p>
            <p class="file-meta">{format_size(size)}" · "{kind}</p>
            {move || {
                let s = state.get();
                match s.state {
                    FileState::Stored => {
                        // The sending side: how much of the file went out to other devices
                        // this session (a second device fetching it counts again).
                        let sending = s.sent > 0 && s.sent_speed > 0.0;
                        let sent_pct = percent(s.sent, size);
                        let sent = (s.sent > 0).then(|| {
                            if sending {
                                format!("Sending {sent_pct}% · {}/s", format_size(s.sent_speed as u64))
                            } else {
                                format!("Sent {}", format_size(s.sent.min(size)))
                            }
                        });
                        let (intents, label) = (i_s.clone(), save_label.clone());
                        let sending_label = format!("Sending {}", name_s.clone());
                        view! {
                            {sending.then(|| view! {
                                <div class="file-progress">
                                    <div class="bar" role="progressbar" aria-label=sending_label
                                        aria-valuemin="0" aria-valuemax="100" aria-valuenow=sent_pct.to_string()>
                                        <div class="fill" style=format!("width: {sent_pct}%")></div>
                                    </div>
                                </div>
                            })}
                            <p class="file-actions">
                                <a href="#" class="save" aria-label=label on:click=move |ev| {
                                    ev.prevent_default();
                                    intents.send(Intent::SaveFile(root));
                                }>"Save"</a>
                                {sent.map(|t| view! { <span class="file-sent">{t}</span> })}
                            </p>
                        }.into_any()
                    }
                    FileState::Waiting | FileState::Downloading => {
                        let pct = percent(s.have, size);
                        let speed = if s.speed > 0.0 {
                            format!(" · {}/s", format_size(s.speed as u64))
                        } else if s.state == FileState::Waiting {
                            " · waiting for a device that has it".to_string()
                        } else {
                            String::new()
                        };
                        let (intents, cancel) = (i_c.clone(), cancel_label.clone());
                        view! {
                            <div class="file-progress">
                                <div class="bar" role="progressbar" aria-label=label.clone()
                                    aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct.to_string()>
                                    <div class="fill" style=format!("width: {pct}%")></div>
                                </div>
                                <p class="file-status">{format!("{pct}%{speed}")}</p>
                                <button type="button" aria-label=cancel
                                    on:click=move |_| intents.send(Intent::CancelFile(root))>"Cancel"</button>
                            </div>
                        }.into_any()
                    }
                    FileState::Stopped | FileState::Failed(_) => {
                        let why = match &s.state {
                            FileState::Failed(reason) => reason.clone(),
                            _ => format!("Stopped at {}% on this device", percent(s.have, size)),
                        };
                        let (intents, retry) = (i_r.clone(), retry_label.clone());
                        view! {
                            <div class="file-progress">
                                <p class="file-status">{why}</p>
                                <button type="button" aria-label=retry
                                    on:click=move |_| intents.send(Intent::RetryFile(root))>"Retry"</button>
                            </div>
                        }.into_any()
                    }
                }
            }}
        </div>
    }
}

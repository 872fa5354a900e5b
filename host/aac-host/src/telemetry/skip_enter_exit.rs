//! A `tracing` layer wrapper that passes everything to its layer except span entries and exits.
//!
//! The runner's spans wrap futures (`Instrumented`), which enter and exit their span and every
//! enclosing one on each poll: thousands of times in a busy turn. `tracing-opentelemetry` does work
//! on every exit whatever its settings (a span lookup, a write lock on the span's extensions and a
//! clock read, to end the span at its last exit), and the per-layer filter around it looks the span
//! up on each entry and exit as well. None of it is needed here: a span ends when it closes, which
//! for these spans is when their future is done.

use std::any::TypeId;

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// `L` without `on_enter`/`on_exit`.
pub struct SkipEnterExit<L>(pub L);

impl<S: Subscriber, L: Layer<S>> Layer<S> for SkipEnterExit<L> {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.0.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    // SAFETY: the pointer is to `self` or comes from the wrapped layer's own `downcast_raw`
    // (`OpenTelemetrySpanExt` finds the exporter's context through it, the per-layer filter its
    // id), valid as long as `self` is.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(std::ptr::from_ref(self).cast());
        }
        // SAFETY: forwarded as is; see above.
        unsafe { self.0.downcast_raw(id) }
    }
}

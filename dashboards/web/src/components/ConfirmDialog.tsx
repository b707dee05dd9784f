import { useEffect, useRef } from "react";

export interface ConfirmRequest {
  title: string;
  body: string;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => void;
}

/** A modal asking to confirm one action; Escape or Cancel closes it. */
export function ConfirmDialog({ request, onClose }: { request: ConfirmRequest | null; onClose: () => void }) {
  const cancelRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (!request) return;
    cancelRef.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [request, onClose]);
  if (!request) return null;
  return (
    <div className="fixed inset-0 z-50 flex items-center justify-center bg-black/60">
      <div
        role="dialog"
        aria-modal="true"
        aria-labelledby="confirm-title"
        data-testid="confirm-dialog"
        className="w-full max-w-md rounded-lg border border-slate-700 bg-slate-900 p-6 shadow-xl"
      >
        <h2 id="confirm-title" className="mb-2 text-lg font-semibold text-slate-100">{request.title}</h2>
        <p className="mb-6 text-sm text-slate-300">{request.body}</p>
        <div className="flex justify-end gap-3">
          <button
            ref={cancelRef}
            type="button"
            data-testid="confirm-cancel"
            onClick={onClose}
            className="rounded border border-slate-600 px-4 py-2 text-sm text-slate-200 hover:bg-slate-800"
          >
            Cancel
          </button>
          <button
            type="button"
            data-testid="confirm-ok"
            onClick={() => {
              onClose();
              request.onConfirm();
            }}
            className={`rounded px-4 py-2 text-sm font-medium text-white ${request.danger ? "bg-red-600 hover:bg-red-500" : "bg-sky-600 hover:bg-sky-500"}`}
          >
            {request.confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}

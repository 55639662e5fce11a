// The rossip web chat (placeholder).

"""The combined guidance objective (`objective`) and the style presets read from prompts/ (`presets`)."""

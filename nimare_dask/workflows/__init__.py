"""End-to-end workflows (what the CLI runs): ALE + FWE, ALE contrasts, MACM."""

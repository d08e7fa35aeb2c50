"""Remote petition (远程接访): booking with identity and evidence, triage by petition staff, a
multi-party video session across tiers (a conference of ``vmesh.conference``), the clerk's record
(笔录) signed by the petitioner, and the case with its 60-day deadline. See docs/petition.md."""

//! Local stand-ins for the Visma Youforce IAM API and the AFAS Profit REST services.
